"""Profile sftune's packed training steps on the real model and print the top operators as markdown.

The same data and batches as ``bench_sft.py``'s ``sftune packed`` run (SmolLM2-135M-Instruct,
512-token packed rows, one row per pass, two passes per optimizer step), through sftune's own
``SFTTrainer``. The first ``--warmup`` optimizer steps are not recorded (allocator warm-up, and
compilation when ``--compile on``); the next ``--steps`` are, with ``torch.profiler``.

    python benchmarks/profile_step.py                    # full fine-tuning, float32, sftune's defaults
    python benchmarks/profile_step.py --lora             # LoRA r16 on all linear layers
    python benchmarks/profile_step.py --compile off      # eager, whatever the default
    python benchmarks/profile_step.py --top 25 --sort cpu_time_total

Prints: the seconds per optimizer step while profiling (the profiler adds some overhead), then a
table of the top operators by self CPU time with their share of the total.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))


def markdown_table(prof, top: int, sort: str) -> str:
    """The ``top`` operators of a finished profiler, by self CPU time, as a markdown table."""
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    key = {"self_cpu_time_total": lambda e: e.self_cpu_time_total, "cpu_time_total": lambda e: e.cpu_time_total}[sort]
    rows = sorted(events, key=key, reverse=True)[:top]
    out = ["| operator | self CPU % | self CPU ms | CPU total ms | calls |", "|---|---|---|---|---|"]
    for e in rows:
        out.append(f"| `{e.key}` | {100 * e.self_cpu_time_total / total:.1f} | {e.self_cpu_time_total / 1e3:.0f} | "
                   f"{e.cpu_time_total / 1e3:.0f} | {e.count} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lora", action="store_true", help="LoRA rank 16 on all linear layers instead of full fine-tuning")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--compile", choices=["auto", "on", "off"], default="auto", help="sftune's compile option")
    ap.add_argument("--attn", choices=["auto", "packed", "mask"], default="auto", help="per-sample attention (packed) or the block-diagonal mask")
    ap.add_argument("--warmup", type=int, default=2, help="optimizer steps run before recording")
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps recorded")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--sort", choices=["self_cpu_time_total", "cpu_time_total"], default="self_cpu_time_total")
    ap.add_argument("--model", default=None, help="model folder (default: SmolLM2-135M-Instruct via sftune)")
    a = ap.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile, schedule
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, TrainingArguments

    from bench_sft import LR, PACK_LEN, PACK_ROWS, SEED, make_chats
    from sftune.config import DataSource, SFTConfig
    from sftune.data.packing import pack
    from sftune.data.prepare import prepare
    from sftune.model.loading import resolve_model
    from sftune.model.precision import training_args_for
    from sftune.train.speed import training_speedups
    from sftune.train.trainer import SFTTrainer

    model_dir = a.model or resolve_model("default")
    tok = AutoTokenizer.from_pretrained(model_dir)
    work = Path(tempfile.mkdtemp(prefix="sftune-profile-"))
    (work / "chats.jsonl").write_text("".join(json.dumps(c) + "\n" for c in make_chats(64, seed=0, tokenizer=tok)))
    cfg = SFTConfig(model=model_dir, data=[DataSource(path=str(work / "chats.jsonl"))], cache_dir=str(work / "cache"),
                    max_length=PACK_LEN, packing=True, precision=a.precision, compile=a.compile,
                    method="lora" if a.lora else "full")
    rows = pack(prepare(cfg, tok, progress=False).dataset.remove_columns(["source"]), PACK_LEN, seed=SEED)

    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if a.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    n_steps = a.warmup + a.steps
    args = TrainingArguments(
        output_dir=str(work / "out"), per_device_train_batch_size=1, gradient_accumulation_steps=PACK_ROWS,
        max_steps=n_steps, learning_rate=LR, lr_scheduler_type="constant", save_strategy="no", report_to=[],
        disable_tqdm=True, logging_steps=1, seed=SEED, remove_unused_columns=False, **training_args_for(a.precision),
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=tok)
    prof = profile(activities=[ProfilerActivity.CPU], schedule=schedule(wait=0, warmup=a.warmup, active=a.steps, repeat=1))
    times: list[float] = []

    class Step(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter())
            prof.step()

    trainer.add_callback(Step())
    attn = {"auto": None, "packed": True, "mask": False}[a.attn]
    with training_speedups(trainer.model, cfg, precision=a.precision, packed_attention=attn) as report:
        t0 = time.perf_counter()
        with prof:
            trainer.train()
    first = times[0] - t0
    per_step = (times[-1] - times[a.warmup - 1]) / a.steps if a.warmup else (times[-1] - t0) / a.steps
    print(f"## {'LoRA r16' if a.lora else 'full fine-tuning'}, {a.precision}, compile={a.compile}, attn={a.attn} ({report.summary()})")
    print()
    print(f"- torch {torch.__version__}, {torch.get_num_threads()} threads; first step {first:.1f} s; "
          f"profiled steps: {per_step:.2f} s per optimizer step ({PACK_ROWS} rows × {PACK_LEN} tokens)")
    print()
    print(markdown_table(prof, a.top, a.sort))


if __name__ == "__main__":
    main()
