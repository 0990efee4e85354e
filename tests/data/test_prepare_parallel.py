"""`prepare` at scale: rows streamed to Arrow files, and `num_proc` processes giving the same result as one."""

from __future__ import annotations

import json
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
    # Spans after the first still name the true line: the last bad lines of big.jsonl, and the
    # first five examples of a reason in input order, across pieces.
    assert report2["examples"]["malformed JSON"][:2] == [f"{big}:37", f"{big}:148"]
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
