"""The child side of ``bench_sft.py``: the benchmark's data, and one training or preprocessing run per process.

``bench_sft.py`` starts every run as ``bench_sft.py --child train|prep ...`` (a fresh process per
run: fair peak RSS, no warm caches), which calls :func:`child_train` or :func:`child_prep` here.
The constants are the benchmark's setup, shared with ``profile_step.py`` and ``gpu_check.py``.
"""

from __future__ import annotations

import contextlib
import json
import random
import tempfile
import time
from pathlib import Path

from proc_memory import peak_mb

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"

SAMPLES = 256
BATCH = 8  # samples per optimizer step in padded mode
PACK_LEN = 512  # packed row length (every sample fits: at most 264 tokens)
PACK_ROWS = 2  # packed rows per step: 1,024 token slots, ~ the 8 × 130 tokens of a padded batch
SEED = 42
LR = 5e-5


# ---------------------------------------------------------------- data
def make_chats(n: int = SAMPLES, seed: int = 0, tokenizer=None, lo: int = 46, hi: int = 264) -> list[dict]:
    """``n`` multi-turn chats built from the bundled general + identity rows, deterministically.

    Each chat strings 1-6 single-turn rows together; chats whose tokenized length (with the
    template's system prompt) falls outside ``[lo, hi]`` are skipped, so lengths span 46-264.
    """
    res = SRC / "sftune" / "resources"
    pool = [json.loads(line)["messages"] for f in ("general.jsonl", "identity.jsonl") for line in open(res / f, encoding="utf-8") if line.strip()]
    rnd = random.Random(seed)
    chats = []
    while len(chats) < n:
        turns = rnd.choice([1, 2, 2, 3, 3, 3, 4, 4, 5, 6])
        msgs = [m for _ in range(turns) for m in rnd.choice(pool)]
        if tokenizer is not None:
            k = len(tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=False))
            if not lo <= k <= hi:
                continue
        chats.append({"messages": msgs})
    return chats


def matmul_peak(dtype_name: str = "float32", size: int = 2048, reps: int = 8) -> float:
    """Best GFLOP/s of a ``size``² matrix product (the machine's practical peak)."""
    import torch

    dt = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, dtype=dt), torch.randn(size, size, dtype=dt)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best / 1e9


# ---------------------------------------------------------------- one training run (child process)
VARIANTS = {"compile": ("auto", "on", "off"), "attn": ("auto", "packed", "mask"), "fused": ("auto", "on", "off")}
PLAIN = "compile=off+attn=mask+fused=off"  # sftune before compiled layers, per-sample attention and fused ops


def parse_variant(spec: str | None) -> dict:
    """``"compile=on+attn=mask"`` -> ``{"compile": "on", "attn": "mask"}``; ``plain`` is :data:`PLAIN`; empty: defaults.

    >>> parse_variant("plain")
    {'compile': 'off', 'attn': 'mask', 'fused': 'off'}
    """
    if not spec:
        return {}
    spec = PLAIN if spec == "plain" else spec
    out = {}
    for part in spec.split("+"):
        k, _, val = part.partition("=")
        if k not in VARIANTS or val not in VARIANTS[k]:
            raise SystemExit(f"--modes: unknown sftune variant {part!r}; use plain, or key=value joined by +: "
                             + ", ".join(f"{k}={'|'.join(vs)}" for k, vs in VARIANTS.items()))
        out[k] = val
    return out


def child_train(a, t_start: float) -> dict:
    """One training run (``bench_sft.py --child train``); ``t_start``: when the process started (for the first step's time)."""
    import torch
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    torch.manual_seed(SEED)
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    n_params = sum(p.numel() for p in model.parameters())
    if a.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        ))
    ds = load_from_disk(a.data).select(range(a.samples))
    ds = ds.remove_columns([c for c in ds.column_names if c not in ("input_ids", "labels")])
    packed = a.mode.startswith("packed")
    # Every packed mode takes PACK_ROWS rows per optimizer step. "packed-accum" runs them as
    # PACK_ROWS micro-batches of one row with gradients accumulated (same update, half the
    # activation memory), "packed-whole" as one pass; plain "packed" is each library's default:
    # one pass for TRL, and for sftune what `sftune train --packing` does on this machine
    # (sftune.train.run.micro_batching: one row per pass on CPU).
    accum = 1
    if a.mode == "packed-accum" or (a.mode == "packed" and a.impl == "sftune"):
        from sftune.config import SFTConfig as Cfg
        from sftune.train.run import micro_batching

        accum = PACK_ROWS if a.mode == "packed-accum" else micro_batching(
            Cfg(packing=True, per_device_train_batch_size=PACK_ROWS), cuda=torch.cuda.is_available())[1]
    batch = (PACK_ROWS // accum) if packed else BATCH

    steps_t: list[float] = []
    tokens: list[int] = []
    trained = [0]

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            steps_t.append(time.perf_counter())

    common = dict(
        output_dir=a.out + ".trainer", per_device_train_batch_size=batch, gradient_accumulation_steps=accum,
        num_train_epochs=1, learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=SEED, disable_tqdm=True,
        dataloader_num_workers=0, bf16=a.precision == "bf16",
        gradient_checkpointing=a.grad_ckpt, torch_compile=a.compile,
    )
    if a.impl == "trl":
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(**common, max_length=PACK_LEN, packing=packed, packing_strategy="bfd", dataset_num_proc=None)
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    else:
        from transformers import TrainingArguments

        from sftune.data.packing import pack
        from sftune.train.trainer import SFTTrainer

        args = TrainingArguments(**common, remove_unused_columns=False)
        train = pack(ds, PACK_LEN, seed=SEED) if packed else ds  # the data step `sftune train --packing` runs
        trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tok)
    trainer.add_callback(Clock())
    speed = {}
    with contextlib.ExitStack() as stack:
        if a.impl == "sftune":  # what `sftune train` wraps its training in (sftune.train.speed)
            from sftune.config import SFTConfig as Cfg
            from sftune.train.speed import training_speedups

            v = parse_variant(a.variant)
            cfg = Cfg(packing=packed, compile=v.get("compile", "auto"), method="lora" if a.lora else "full")
            attn = {"auto": None, "packed": True, "mask": False}[v.get("attn", "auto")]
            fused = {"auto": None, "on": True, "off": False}[v.get("fused", "auto")]
            report = stack.enter_context(training_speedups(trainer.model, cfg, precision=a.precision, packed_attention=attn,
                                                              fused_lora=fused, trainer=trainer))
        inner = trainer.data_collator  # after the speed-ups: padding-free batching replaces the collator

        def counting_collator(rows):
            tokens.append(sum(len(r["input_ids"]) for r in rows))  # real tokens: packed rows hold no padding yet
            out = inner(rows)
            trained[0] += int((out["labels"][:, 1:] != -100).sum())  # boundaries are -100 in both packers
            return out

        trainer.data_collator = counting_collator
        t_train = time.perf_counter()
        trainer.train()
    if a.impl == "sftune":
        speed = report.to_dict()
    import shutil

    shutil.rmtree(a.out + ".trainer", ignore_errors=True)  # save_strategy "no": only the Trainer's empty folder
    rss = peak_mb() * 2**20  # VmHWM: ru_maxrss would include bench_sft.py's own RSS (proc_memory.py)
    n = len(steps_t)
    # The collator runs ahead of the steps (accelerate's loader fetches one batch early), so the
    # tokens collated by a step's end include the next batch. Batches are consumed in the order
    # they are collated: the first optimizer step took the first `accum` of them.
    steady = ((sum(tokens) - sum(tokens[:accum])) / (steps_t[-1] - steps_t[0])) if n > 1 else float("nan")

    # the loss of the trained model over the same samples: one code path for every run
    model.eval()
    tot, cnt = 0.0, 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
        for i in range(0, len(ds), BATCH):
            rows = ds.select(range(i, min(i + BATCH, len(ds))))
            L = max(len(x) for x in rows["input_ids"])
            ids = torch.full((len(rows), L), tok.pad_token_id)
            lab = torch.full((len(rows), L), -100)
            att = torch.zeros((len(rows), L), dtype=torch.long)
            for j, (x, y) in enumerate(zip(rows["input_ids"], rows["labels"])):
                ids[j, : len(x)], lab[j, : len(y)], att[j, : len(x)] = torch.tensor(x), torch.tensor(y), 1
            logits = model(input_ids=ids, attention_mask=att, use_cache=False).logits[:, :-1].float()
            y = lab[:, 1:]
            tot += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
            cnt += int((y != -100).sum())
    return {
        "impl": a.impl, "mode": a.mode, "steps": n, "real_tokens": sum(tokens), "trained_tokens": trained[0],
        "tokens_per_s": steady, "tokens_per_s_incl_first": sum(tokens) / (steps_t[-1] - t_train),
        "first_step_s": steps_t[0] - t_start, "peak_rss_gb": rss / 1e9, "final_loss": tot / cnt,
        "n_params": n_params, "train_s": steps_t[-1] - t_train, "speed": speed,
    }


def child_prep(a) -> dict:
    """Preprocessing speed: sftune's prepare (cold, then cached) vs TRL's dataset preparation."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from sftune.config import DataSource, SFTConfig
    from sftune.data.prepare import prepare

    tok = AutoTokenizer.from_pretrained(a.model)
    chats = [json.loads(line) for line in open(a.data, encoding="utf-8")]
    cache = tempfile.mkdtemp(prefix="sftune-bench-cache-")
    cfg = SFTConfig(model=a.model, data=[DataSource(path=a.data)], cache_dir=cache, max_length=PACK_LEN)
    t = time.perf_counter()
    p = prepare(cfg, tok, progress=False)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    p2 = prepare(cfg, tok, progress=False)
    warm = time.perf_counter() - t
    assert p2.cached

    from trl import SFTConfig as TRLConfig
    from trl import SFTTrainer

    ds = Dataset.from_list(chats)
    targs = TRLConfig(output_dir=cache + "/trl", max_length=PACK_LEN, use_cpu=True, report_to=[], dataset_num_proc=None)
    # the trainer only to call its preparation step on the same conversations; constructing
    # it already prepares a tiny dataset, excluded from the timing
    trainer = SFTTrainer(model=a.model, args=targs, train_dataset=ds.select(range(2)), processing_class=tok)
    t = time.perf_counter()
    trainer._prepare_dataset(ds, tok, targs, False, None, "bench")
    trl_s = time.perf_counter() - t
    return {"samples": len(chats), "sftune_s": cold, "sftune_cached_s": warm, "trl_s": trl_s,
            "sftune_rows": len(p.dataset)}
