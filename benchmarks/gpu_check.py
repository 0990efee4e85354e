"""sftune's GPU path, checked on one GPU in one command (about 5-8 minutes on an H100).

    python benchmarks/gpu_check.py --prepare-carry   # once, on a machine with PyPI: wheels + model skeleton
    python3 benchmarks/gpu_check.py                  # on the GPU machine: every check, then the table
    python benchmarks/gpu_check.py --dry-run         # the CPU parts only (also what runs without CUDA)

On SmolLM2-135M (``--model default``; where the bundled GGUF is absent, the same architecture and
tokenizer with seeded random weights, from the carried skeleton, and the table says so):

1. packed rows (``sftune.data.packing``) give the loss and gradients of one sample per pass,
   with sdpa (fp32 and bf16 autocast) and FlashAttention-2's varlen kernel when flash_attn is there;
2. bf16 LoRA, bf16 full, QLoRA and fp16 LoRA runs of ``sftune.train.run.train`` (packing, the GPU
   default of the whole batch per pass) train a few steps, save, and load back in plain
   transformers/peft with the trained weights and the same loss as the model in memory;
3. ``sftune serve`` answers one request of the openai client on the GPU;
4. tokens/s and peak GPU memory of sftune (packed) against TRL's SFTTrainer (padded,
   padding-free, packed), each in its own process, on the same tokenized samples.

Writes ``benchmarks/results/gpu_check_<gpu>.md`` and ``.json`` (after every check). Exit codes: 0 all passed, 1 a check
failed, 3 no CUDA device (or --dry-run): the GPU checks were not run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "src")]  # this checkout's sftune, and gpu_check_parts

from gpu_check_parts import (  # noqa: E402
    CARRY, OPTIONAL, SKELETON, SRC, Skip, dist_version, free_gpu_memory, free_port, gpu_processes, has_module, install,
    install_plan, record_skip,
    materialize_skeleton, max_rel_diff, probe_batch, probe_loss, saved_dtypes, trained_weights, travel_mib,
    packed_vs_unpacked, prepare_carry, random_rows, run_check, use_site, write_results,
)

EXIT_NO_CUDA = 3
PACK_LEN = 512  # packed row length: every generated chat (46-264 tokens) fits
SAMPLES = 512  # generated chats for the training runs and the throughput comparison
# tolerances of packed vs unpacked: float32 differs by summation order only; bf16 autocast
# rounds every matmul, differently for different shapes
TOL = {"fp32": {"loss_rel": 1e-4, "grad_rel": 1e-3}, "bf16": {"loss_rel": 1e-2, "grad_rel": 5e-2}}
# throughput runs: the same ~4,200 token slots per optimizer step for everyone
BENCH = {("trl", "padded"): 32, ("trl", "padding_free"): 32, ("trl", "packed"): 8, ("sftune", "packed"): 8}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--model", default="default", help="model folder, or 'default' (SmolLM2-135M-Instruct)")
    ap.add_argument("--dry-run", action="store_true", help="run only the CPU parts, then exit with code 3")
    ap.add_argument("--prepare-carry", action="store_true", help="download wheels + the model skeleton into .gpu_carry and exit")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default: benchmarks/results; a temp folder for --dry-run)")
    ap.add_argument("--budget", type=float, default=450, help="seconds after which remaining checks are skipped (default: 450)")
    ap.add_argument("--skip", default="", help="comma-separated check groups to leave out: equivalence,train,serve,throughput")
    ap.add_argument("--no-install", action="store_true", help="do not install missing packages")
    # the throughput child process (one per run, for a fair peak memory)
    for a in ("--child", "--impl", "--mode", "--rows", "--attn", "--result"):
        ap.add_argument(a, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


# ---------------------------------------------------------------- 1. packed = unpacked
def check_equivalence(model_dir: str | None, attn: str, precision: str, device: str):
    """One (attention kernel, precision) pair on the real model (``model_dir``) or a tiny random Llama."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    if attn == "flash_attention_2" and not has_module("flash_attn"):
        raise Skip("flash_attn is not installed (no PyPI wheel; its sdist compiles for ~1 h)")
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 here (the training runs use bf16)
    torch.manual_seed(0)
    if model_dir:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation=attn)
    else:
        cfg = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation=attn)
    model.to(device).train()
    rows = random_rows(12, seed=1, vocab=min(model.config.vocab_size, 30000))
    r = packed_vs_unpacked(model, rows, PACK_LEN, device, torch.bfloat16 if precision == "bf16" else None)
    tol = TOL[precision]
    # the control must be far outside the tolerance, else the check could not see a leak
    ok = (r["same_grad_tensors"] and r["loss_rel"] <= tol["loss_rel"] and r["grad_rel"] <= tol["grad_rel"]
          and r["leak_grad_rel"] > 4 * tol["grad_rel"])
    return ok, (f"{r['samples']} samples in {r['packed_rows']} rows: loss rel diff {r['loss_rel']:.1e} (tol {tol['loss_rel']:.0e}), "
                f"grad rel diff {r['grad_rel']:.1e} (tol {tol['grad_rel']:.0e}); control, attention across samples: "
                f"grad rel diff {r['leak_grad_rel']:.1e}"), r


# ---------------------------------------------------------------- 2. train, save, load back
def check_training(model_dir: str, data: Path, work: Path, method: str, precision: str, attn: str):
    import torch
    from transformers import AutoModelForCausalLM

    from sftune.config import SFTConfig
    from sftune.model.methods import qlora_load_kwargs
    from sftune.train.run import train

    if method == "qlora" and not has_module("bitsandbytes"):
        raise Skip("bitsandbytes is not installed")
    out = work / f"run-{method}-{precision}"
    cfg = SFTConfig(model=model_dir, data=[str(data)], method=method, precision=precision, packing=True, max_length=PACK_LEN,
                    per_device_train_batch_size=4, max_steps=4, learning_rate=2e-4 if method != "full" else 5e-5,
                    warmup_ratio=0.0, logging_steps=1, save_steps=10_000, report_to=["none"], output_dir=str(out),
                    cache_dir=str(work / "cache"), attn_implementation=attn)
    torch.cuda.reset_peak_memory_stats()
    res = train(cfg, progress=False, compare=False)
    peak = torch.cuda.max_memory_allocated() / 2**30
    info = json.loads((out / "run_info.json").read_text())
    batch = probe_batch(model_dir)
    loss_mem, w_mem = probe_loss(res.model.eval(), batch, precision), trained_weights(res.model, method)
    del res
    free_gpu_memory()
    # load back with plain transformers (+ peft for adapters), as a user would
    if method == "full":
        back = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    else:
        from peft import PeftModel

        # qlora: the same 4-bit base as in training, put on the GPU as it loads
        kw = {**qlora_load_kwargs(cfg), "device_map": {"": 0}} if method == "qlora" else {}
        back = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **kw), out)
    if method != "qlora":  # a 4-bit model is placed on the GPU as it loads, and cannot be moved
        back.to("cuda")
    loss_back, w_back = probe_loss(back.eval(), batch, precision), trained_weights(back, method)
    del back
    free_gpu_memory()
    if method == "full":  # how far training moved the weights from the base's
        from safetensors.torch import load_file

        base = {k: v for f in Path(model_dir).glob("*.safetensors") for k, v in load_file(f).items()}
        moved = max_rel_diff(w_mem, {k: v.float() for k, v in base.items()})
    else:  # LoRA's B matrices start at zero
        moved = max(v.abs().max().item() for k, v in w_mem.items() if "lora_B" in k)
    saved = saved_dtypes(out)
    d = {"loss_in_memory": loss_mem, "loss_reloaded": loss_back, "train_loss": info["metrics"].get("train_loss"),
         "reload_weight_rel_diff": max_rel_diff(w_mem, w_back), "weights_compared": f"{len(w_mem.keys() & w_back.keys())}/{len(w_mem)}",
         "moved_from_init": moved, "saved_dtypes": sorted(saved), "peak_gib": peak, "micro_batch": info["micro_batch"],
         "accumulation": info["gradient_accumulation_steps"], "precision": info["precision"],
         "files": sorted(p.name for p in out.iterdir() if p.suffix in (".safetensors", ".json"))}
    exact = saved <= {"F32"}  # a float32 copy must come back bit for bit; bf16 rounds (~4e-3)
    ok = (d["reload_weight_rel_diff"] <= (1e-6 if exact else 8e-3) and len(w_mem.keys() & w_back.keys()) == len(w_mem) > 0
          and moved > 0 and abs(loss_back - loss_mem) <= 0.02 * abs(loss_mem)
          and info["micro_batch"] == 4 and info["gradient_accumulation_steps"] == 1)  # the GPU default: whole batch per pass
    return ok, (f"train loss {d['train_loss']:.3f}; reloaded weights rel diff {d['reload_weight_rel_diff']:.1e} "
                f"({d['weights_compared']} tensors), moved {moved:.1e}; probe loss in memory {loss_mem:.4f}, reloaded "
                f"{loss_back:.4f}; {info['micro_batch']} rows/pass x {info['gradient_accumulation_steps']}; peak {peak:.2f} GiB"), d


# ---------------------------------------------------------------- 3. serve
def check_serve(model: str, work: Path):
    import httpx
    from openai import OpenAI

    port = free_port()
    log = open(work / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "sftune", "serve", "--model", model, "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        t = time.perf_counter()
        while True:  # wait for the model to load and the server to listen
            if proc.poll() is not None:
                raise RuntimeError(f"sftune serve exited with {proc.returncode}: {(work / 'serve.log').read_text()[-800:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() - t > 180:
                raise TimeoutError("sftune serve did not answer within 180 s")
            time.sleep(1)
        up = time.perf_counter() - t
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
        t = time.perf_counter()
        r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Say hello."}], max_tokens=16, temperature=0)
        d = {"startup_s": up, "request_s": time.perf_counter() - t, "answer": r.choices[0].message.content,
             "finish_reason": r.choices[0].finish_reason, "completion_tokens": r.usage.completion_tokens if r.usage else None}
        gpu = gpu_processes()  # the server's pid should be listed (pids may differ inside a sandbox)
        d["gpu_processes"], d["server_pid_listed"] = gpu, f"process {proc.pid} " in gpu
        ok = r.choices[0].finish_reason in ("stop", "length") and d["completion_tokens"]
        return bool(ok), f"up in {up:.0f} s; {d['completion_tokens']} tokens in {d['request_s']:.2f} s: {d['answer']!r}", d
    finally:
        proc.terminate()  # only the server this check started
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# ---------------------------------------------------------------- 4. throughput, one process per run
def child_bench(a) -> dict:
    import torch
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, TrainingArguments

    torch.manual_seed(42)
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation=a.attn)
    ds = load_from_disk(a.rows)
    ds = ds.remove_columns([c for c in ds.column_names if c not in ("input_ids", "labels")])
    common = dict(output_dir=a.result + ".trainer", per_device_train_batch_size=BENCH[(a.impl, a.mode)], num_train_epochs=1,
                  learning_rate=5e-5, lr_scheduler_type="constant", warmup_steps=0, logging_steps=10, save_strategy="no",
                  report_to=[], seed=42, disable_tqdm=True, dataloader_num_workers=0,
                  # bf16 autocast on the GPU; float32 on a CPU, only to review this function there
                  bf16=torch.cuda.is_available(), use_cpu=not torch.cuda.is_available())
    if a.impl == "trl":
        from trl import SFTConfig, SFTTrainer

        # padding-free without packing refuses a max_length it cannot enforce (every chat is < PACK_LEN anyway)
        args = SFTConfig(**common, max_length=None if a.mode == "padding_free" else PACK_LEN, packing=a.mode == "packed",
                         padding_free=a.mode == "padding_free", dataset_num_proc=None)
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    else:
        from sftune.train.trainer import SFTTrainer

        trainer = SFTTrainer(model=model, args=TrainingArguments(**common, remove_unused_columns=False), train_dataset=ds,
                             processing_class=tok, packing=True, max_length=PACK_LEN)
    steps_t, tokens, trained = [], [], [0]

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            torch.cuda.synchronize()  # the step's kernels are done when its time is taken
            steps_t.append(time.perf_counter())

    inner = trainer.data_collator

    def counting(rows):
        tokens.append(sum(len(r["input_ids"]) for r in rows))  # real tokens: no padding added yet
        out = inner(rows)
        trained[0] += int((out["labels"][:, 1:] != -100).sum())
        return out

    trainer.data_collator = counting
    trainer.add_callback(Clock())
    torch.cuda.reset_peak_memory_stats()
    trainer.train()
    # one batch per optimizer step (no accumulation), so tokens[i] belongs to step i whenever the
    # dataloader collated it; the first step (warm-up, kernel selection) is left out
    n = len(steps_t)
    steady = sum(tokens[1:n]) / (steps_t[-1] - steps_t[0]) if n > 1 else float("nan")
    return {"tokens_per_s": steady, "peak_gib": torch.cuda.max_memory_allocated() / 2**30, "trained_tokens": trained[0],
            "steps": len(steps_t), "real_tokens": sum(tokens)}


def check_throughput(impl: str, mode: str, model_dir: str, rows: Path, attn: str, work: Path):
    result = work / f"bench-{impl}-{mode}.json"
    cmd = [sys.executable, __file__, "--child", "bench", "--impl", impl, "--mode", mode, "--model", model_dir,
           "--rows", str(rows), "--attn", attn, "--result", str(result)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
    if p.returncode != 0:
        raise RuntimeError(f"the run failed: {p.stderr[-1200:]}")
    d = json.loads(result.read_text())
    return True, f"{d['tokens_per_s']:.0f} tokens/s, peak {d['peak_gib']:.2f} GiB, {d['trained_tokens']} trained tokens", d


# ---------------------------------------------------------------- orchestration
def resolve_model_dir(name: str, work: Path) -> tuple[str, str]:
    """(model folder, where its weights come from)."""
    from sftune.model.loading import ModelLoadError, resolve_model

    try:
        return resolve_model(name), "real weights" if name == "default" else name
    except ModelLoadError as e:
        if name != "default" or not (CARRY / SKELETON).is_file():
            raise
        why = str(e).splitlines()[0]
    path = materialize_skeleton(CARRY / SKELETON, work / "smollm2-random")
    return str(path), f"SmolLM2-135M architecture and tokenizer, seeded random weights (real weights absent: {why})"


def prepare_rows(model_dir: str, work: Path) -> tuple[Path, Path]:
    """The generated chats (bench_sft.make_chats) as .jsonl, and tokenized once by sftune for every trainer."""
    from transformers import AutoTokenizer

    from bench_sft import make_chats
    from sftune.config import SFTConfig
    from sftune.data.prepare import prepare

    tok = AutoTokenizer.from_pretrained(model_dir)
    chats = work / "chats.jsonl"
    chats.write_text("".join(json.dumps(c) + "\n" for c in make_chats(SAMPLES, seed=0, tokenizer=tok)))
    cfg = SFTConfig(model=model_dir, data=[str(chats)], cache_dir=str(work / "cache"), max_length=PACK_LEN)
    prepare(cfg, tok, progress=False).dataset.save_to_disk(str(work / "rows"))
    return chats, work / "rows"


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.child:
        Path(a.result).write_text(json.dumps(child_bench(a)))
        return 0
    if a.prepare_carry:
        print("\n".join(prepare_carry(CARRY)))
        mib = travel_mib(CARRY)
        print(f"{CARRY} + the tracked files: {mib:.1f} MiB travel to the GPU machine (its limit: 64 MiB)")
        return 0 if mib < 64 else 1
    t0 = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(SRC)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    import torch

    cuda = torch.cuda.is_available() and not a.dry_run
    skip = set(filter(None, a.skip.split(",")))
    results, meta = [], {}
    plan = install_plan()
    if cuda and not a.no_install:  # before anything imports transformers: the carried version must win
        for r in install(plan):
            meta[f"install {r['what']}"] = f"ok in {r['seconds']} s" if r["ok"] else f"FAILED: {r['error']}"
        use_site()
        plan = install_plan()
    meta["missing packages"] = ", ".join(f"{d} (have {v})" if v else d for d, v in plan) or "none"
    meta["optional"] = ", ".join(f"{d}: {'yes' if has_module(m) else 'no'}" for m, d in OPTIONAL)
    meta["versions"] = ", ".join(f"{d} {dist_version(d) or 'absent'}"
                                 for d in ("torch", "transformers", "peft", "trl", "bitsandbytes", "flash-attn", "datasets",
                                           "accelerate", "pyarrow", "fsspec", "tokenizers", "huggingface-hub"))
    meta["python"] = platform.python_version()
    meta["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    device = "cpu" if not cuda else "cuda"
    name = torch.cuda.get_device_name(0) if cuda else "cpu dry run"
    work = Path(tempfile.mkdtemp(prefix="sftune-gpu-check-"))

    if not cuda:  # the CPU parts: packed = unpacked on a tiny random Llama, and the table writer
        for attn, prec in (("sdpa", "fp32"), ("eager", "fp32"), ("sdpa", "bf16")):
            label = f"packed = unpacked: tiny Llama, {attn}, {prec}"
            if "equivalence" in skip:
                record_skip(results, label, "--skip equivalence")
            else:
                run_check(results, label, check_equivalence, None, attn, prec, "cpu")
        md, _ = write_results(results, meta, a.out or work, name)
        print(f"results table (CPU parts): {md}")
        why = "--dry-run" if torch.cuda.is_available() else "no CUDA device"
        print(f"{why}: the GPU checks were not run (exit code {EXIT_NO_CUDA})", file=sys.stderr)
        return EXIT_NO_CUDA

    out = a.out or HERE / "results"

    def timed(group, label, fn, *args, need=30):
        if group in skip:
            record_skip(results, label, f"--skip {group}")
        elif time.perf_counter() - t0 > a.budget - need:
            record_skip(results, label, f"time budget of {a.budget:.0f} s spent")
        else:
            run_check(results, label, fn, *args)
        write_results(results, meta, out, name)  # after every check: a crash or a timeout keeps the rows so far

    def setup():
        model_dir, meta["weights"] = resolve_model_dir(a.model, work)
        chats, rows = prepare_rows(model_dir, work)
        return True, f"{model_dir}: {meta['weights']}", {"model_dir": model_dir, "chats": chats, "rows": rows}

    s = run_check(results, "setup: model folder and tokenized chats", setup)
    if s.status != "pass":  # nothing else can run
        print(f"results: {write_results(results, meta, out, name)[0]}\nFAILED: setup")
        return 1
    model_dir, chats, rows = s.details["model_dir"], s.details["chats"], s.details["rows"]
    attn = "flash_attention_2" if has_module("flash_attn") else "sdpa"
    meta["attention in training and throughput runs"] = attn
    for impl, prec in (("sdpa", "fp32"), ("sdpa", "bf16"), ("flash_attention_2", "bf16")):
        timed("equivalence", f"packed = unpacked: {impl}, {prec}", check_equivalence, model_dir, impl, prec, device)
    free_gpu_memory()
    for method, prec in (("lora", "bf16"), ("full", "bf16"), ("qlora", "bf16"), ("lora", "fp16")):
        timed("train", f"train + save + reload: {method}, {prec}", check_training, model_dir, chats, work, method, prec, attn, need=60)
    full = work / "run-full-bf16"
    timed("serve", "sftune serve on the GPU", check_serve, str(full if (full / "config.json").is_file() else model_dir), work, need=60)
    for impl, mode in BENCH:
        timed("throughput", f"throughput: {impl} {mode}", check_throughput, impl, mode, model_dir, rows, attn, work, need=45)
    meta["wall time"] = f"{time.perf_counter() - t0:.0f} s"
    md, js = write_results(results, meta, out, name)
    failed = [c.name for c in results if c.status == "fail"]
    print(f"results: {md} and {js}" + (f"\nFAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
