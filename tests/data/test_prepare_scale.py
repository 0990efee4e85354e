"""`prepare` at scale: rows streamed to Arrow files with bounded memory, and `num_proc` processes giving the same result as one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sftune.config import SFTConfig
from sftune.data import shards
from sftune.data.prepare import prepare
from sftune.data.report import DataError

FIXTURES = Path(__file__).parent / "fixtures"


def write_chats(path: Path, n: int, bad_every: int = 0) -> Path:
    """``n`` short chats as .jsonl; with ``bad_every``, every that-many-th line is broken
    (malformed JSON, an empty answer or a blank line, in turn)."""
    lines = []
    for i in range(n):
        if bad_every and i % bad_every == bad_every - 1:
            kind = (i // bad_every) % 3
            lines.append(['{"messages": [', json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}), ""][kind])
            continue
        lines.append(json.dumps({"messages": [{"role": "user", "content": f"What is {i} + {i % 7}?"},
                                              {"role": "assistant", "content": f"{i} + {i % 7} = {i + i % 7}."}]}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rows_and_report(prep):
    return prep.dataset.to_list(), prep.report.to_dict()


def test_two_processes_give_the_rows_and_report_of_one(smol_tokenizer, tmp_path, monkeypatch):
    big = write_chats(tmp_path / "big.jsonl", 900, bad_every=37)
    sources = [str(big), str(FIXTURES / "alpaca.csv"), str(FIXTURES / "malformed.jsonl")]
    cfg = SFTConfig(data=sources, cache_dir=str(tmp_path / "cache"))
    one = prepare(cfg, smol_tokenizer, use_cache=False, progress=False)
    monkeypatch.setattr(shards, "MIN_PIECE_BYTES", 1)  # small data would stay in one process
    pieces = shards.plan(cfg.data, 2)
    assert len(pieces) == 2 * shards.PIECES_PER_PROC + 2  # big.jsonl in 8 spans; the csv; malformed.jsonl (too small to cut)
    assert [p.source.format for p in pieces[:8]] == ["messages"] * 8  # detected once, from the file's first row
    two = prepare(cfg, smol_tokenizer, use_cache=False, progress=False, num_proc=2)

    rows1, report1 = rows_and_report(one)
    rows2, report2 = rows_and_report(two)
    assert len(rows2) == len(rows1) > 800
    assert rows2 == rows1  # every token, label and file:line, in input order
    assert report2 == report1
    # Spans after the first (about 112 lines each) still name the true lines, and a reason keeps
    # its first five examples in input order, across pieces.
    assert report2["examples"]["malformed JSON"] == [f"{big}:{n}" for n in (37, 148, 259, 370, 481)]
    assert report2["dropped_by_reason"]["malformed JSON"] == 8 + 1  # big.jsonl's and malformed.jsonl's
    assert report2["rows_in"] == 900 - 900 // 37 // 3 + 3 + 14  # blank lines are not rows; csv 3, malformed.jsonl 14
    assert rows2[-1]["source"] == f"{FIXTURES / 'malformed.jsonl'}:15"


def test_strict_stops_at_the_first_bad_row_in_input_order(smol_tokenizer, tmp_path, monkeypatch):
    path = tmp_path / "a.jsonl"
    good = [json.dumps({"instruction": f"Say {i}", "output": str(i)}) for i in range(400)]
    good[150], good[390] = '{"instruction": ', '{"instruction": "x"}'  # malformed at line 151, no output at 391
    path.write_text("\n".join(good) + "\n")
    monkeypatch.setattr(shards, "MIN_PIECE_BYTES", 1)
    cfg = SFTConfig(data=[str(path)], strict=True, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"a\.jsonl:151: malformed JSON"):
        prepare(cfg, smol_tokenizer, use_cache=False, progress=False, num_proc=2)


def test_rows_past_the_spill_size_stream_to_a_memory_mapped_cache(smol_tokenizer, tmp_path, monkeypatch):
    data = write_chats(tmp_path / "a.jsonl", 1500, bad_every=101)
    cfg = SFTConfig(data=[str(data)], cache_dir=str(tmp_path / "cache"))
    in_memory = prepare(cfg, smol_tokenizer, use_cache=False, progress=False)
    assert not in_memory.dataset.cache_files  # small data: no files written while encoding

    monkeypatch.setattr(shards, "SPILL_BYTES", 20_000)  # about 150 rows
    monkeypatch.setattr(shards, "WRITE_BYTES", 50_000)
    spilled = prepare(cfg, smol_tokenizer, progress=False)
    assert rows_and_report(spilled) == rows_and_report(in_memory)
    # Memory-mapped from the cache, and the work folder is gone.
    assert spilled.dataset.cache_files and all(f["filename"].startswith(str(spilled.path)) for f in spilled.dataset.cache_files)
    assert [p.name for p in spilled.path.parent.iterdir()] == [spilled.path.name]
    again = prepare(cfg, smol_tokenizer, progress=False)
    assert again.cached and rows_and_report(again) == rows_and_report(in_memory)

    # Without the cache the rows stay memory-mapped from the work folder (removed at exit).
    uncached = prepare(cfg, smol_tokenizer, use_cache=False, progress=False)
    assert uncached.dataset.to_list() == in_memory.dataset.to_list()
    assert uncached.dataset.cache_files and ".work-" in uncached.dataset.cache_files[0]["filename"]


def test_num_proc_flag_reaches_prepare(smol_tokenizer_dir, tmp_path, monkeypatch):
    import datasets

    from sftune.cli import main

    data = write_chats(tmp_path / "a.jsonl", 300, bad_every=50)
    seen = []
    real = shards.encode_sources
    monkeypatch.setattr("sftune.data.prepare.encode_sources", lambda job, sources, num_proc, *a: seen.append(num_proc) or real(job, sources, num_proc, *a))
    out = tmp_path / "out"
    assert main(["prepare", "--model", str(smol_tokenizer_dir), "--data", str(data), "--output", str(out),
                 "--cache-dir", str(tmp_path / "cache"), "--num-proc", "2"]) == 0
    assert seen == [2]
    assert len(datasets.load_from_disk(str(out))) == 294


def test_num_proc_must_be_positive():
    from sftune.errors import ConfigError

    with pytest.raises(ConfigError, match="num_proc"):
        SFTConfig(num_proc=0)


# Runs in a fresh process: samples the process's anonymous resident memory (RssAnon: what it
# holds, without the pages of memory-mapped files, which the kernel can drop) every 5 ms while
# prepare() runs, after a warm-up run has done the imports and lazy set-up.
PROBE = r"""
import json, sys, threading, time
from transformers import AutoTokenizer
from sftune.config import SFTConfig
from sftune.data import shards
from sftune.data.prepare import prepare

def anon():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("RssAnon:"))

tok_dir, warm, data, cache = sys.argv[1:5]
# Small thresholds, so that these small files behave as millions of rows do with the defaults.
shards.SPILL_BYTES, shards.WRITE_BYTES = 4 << 20, 1 << 20
tok = AutoTokenizer.from_pretrained(tok_dir)
prepare(SFTConfig(data=[warm], cache_dir=cache), tok, use_cache=False, progress=False)
peak, done = [0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], anon())
        time.sleep(0.005)
base = anon()
sampler = threading.Thread(target=sample)
sampler.start()
prep = prepare(SFTConfig(data=[data], cache_dir=cache), tok, progress=False)
done.set()
sampler.join()
growth = max(peak[0], anon()) - base
import pyarrow.compute as pc
tokens = pc.sum(pc.list_value_length(prep.dataset.data.column("input_ids"))).as_py()
print(json.dumps({"rows": len(prep.dataset), "tokens": tokens, "growth": growth}))
"""


def peak_growth(tok_dir: Path, tmp: Path, rows: int) -> dict:
    warm = write_chats(tmp / "warm.jsonl", 600)
    data = write_chats(tmp / f"{rows}.jsonl", rows)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run([sys.executable, "-c", PROBE, str(tok_dir), str(warm), str(data), str(tmp / f"cache-{rows}")],
                         capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads RssAnon from /proc (Linux)")
def test_peak_memory_does_not_grow_with_the_rows(smol_tokenizer_dir, tmp_path):
    small = peak_growth(smol_tokenizer_dir, tmp_path, 20_000)
    big = peak_growth(smol_tokenizer_dir, tmp_path, 80_000)
    assert (small["rows"], big["rows"]) == (20_000, 80_000)
    # Held as Python lists, as prepare() did before streaming, the rows alone would take at least
    # 8 bytes per token per column (a pointer each, before the int objects): 4 times more for 4
    # times the rows. Streamed, the peak is a chunk plus the 4 MiB spill buffer, whatever the size.
    as_lists = big["tokens"] * 2 * 8
    assert big["growth"] < as_lists / 4, (small, big)
    assert big["growth"] < 1.5 * small["growth"] + (8 << 20), (small, big)
