"""--streaming: the same samples, masks and bad-row report as the in-memory path, read lazily; packing on the fly; mixing shares."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from sftune.config import ConfigError, DataSource, SFTConfig
from sftune.data.prepare import prepare
from sftune.data.report import DataError, DataReport
from sftune.data.streaming import mix_streams, pack_stream, stream_source, streaming_data
from sftune.data.templates import resolve_template
from sftune.data.tokenize import IGNORE_INDEX, Encoder
from streaming_rows import BAD, write_rows


@pytest.fixture()
def template(smol_tokenizer):
    return resolve_template(None, smol_tokenizer)


def _stream(path, tok, template, report, **kw):
    return stream_source(DataSource(path=str(path)), Encoder(tok, template, max_length=kw.pop("max_length", 2048)), report, **kw)


def test_streamed_samples_and_report_equal_the_prepared_ones(smol_tokenizer, template, tmp_path):
    data = write_rows(tmp_path / "train.jsonl", 1200, BAD)
    cfg = SFTConfig(model="x", data=[str(data)], max_length=48, cache_dir=str(tmp_path / "cache"))
    prep = prepare(cfg, smol_tokenizer, template=template, use_cache=False, progress=False)
    report = DataReport()
    streamed = list(_stream(data, smol_tokenizer, template, report, max_length=48))
    assert len(streamed) == len(prep.dataset) > 1000
    for i in (0, 1, 4, 5, 500, len(streamed) - 1):  # truncated rows (max_length 48) included
        row = prep.dataset[i]
        assert (streamed[i]["input_ids"], streamed[i]["labels"], streamed[i]["source"]) == (row["input_ids"], row["labels"], row["source"])
    assert [r["labels"] for r in streamed] == prep.dataset["labels"]
    assert [r["input_ids"] for r in streamed] == prep.dataset["input_ids"]
    assert any(l == IGNORE_INDEX for l in streamed[0]["labels"]) and any(l != IGNORE_INDEX for l in streamed[0]["labels"])
    mine, theirs = report.to_dict(), prep.report.to_dict()
    for key in ("rows_in", "kept", "dropped", "dropped_by_reason", "examples"):
        assert mine[key] == theirs[key], key
    assert mine["dropped"] == 4 and mine["examples"]["malformed JSON"] == [f"{data}:3"]


def test_bad_rows_are_counted_as_they_are_met_with_file_and_line(smol_tokenizer, template, tmp_path):
    data = write_rows(tmp_path / "train.jsonl", 3000, BAD)
    report, entry = DataReport(), {}
    first = list(itertools.islice(_stream(data, smol_tokenizer, template, report, entry=entry), 20))
    assert first[0]["source"] == f"{data}:1" and f"{data}:3" not in [r["source"] for r in first]
    # Counts so far: only the first chunk of conversations (CHUNK = 512) was read, not line 700.
    assert 512 < report.rows_in < 600
    assert report.examples["malformed JSON"] == [f"{data}:3"]
    assert "empty answer" not in report.dropped
    assert entry["rows_in"] == report.rows_in and entry["dropped_by_reason"] == dict(report.dropped)
    report, entry = DataReport(), {}
    assert len(list(_stream(data, smol_tokenizer, template, report, entry=entry))) == 2996
    assert report.rows_in == 3000 and report.examples["empty answer"] == [f"{data}:700"]
    assert entry["passes"] == 1 and entry["kept"] == 2996 and entry["dropped"] == 4


def test_strict_streaming_stops_at_the_first_bad_row(smol_tokenizer, template, tmp_path):
    data = write_rows(tmp_path / "train.jsonl", 50, BAD)
    with pytest.raises(DataError, match=r"train\.jsonl:3: malformed JSON"):
        list(_stream(data, smol_tokenizer, template, DataReport(strict=True)))


def test_a_stream_with_nothing_to_train_raises_when_read(smol_tokenizer, template, tmp_path):
    data = tmp_path / "empty.jsonl"
    data.write_text('{"text": ""}\n{"text": " "}\n')
    with pytest.raises(DataError, match="no training rows left"):
        list(_stream(data, smol_tokenizer, template, DataReport()))


def test_packing_on_the_fly_keeps_every_sample_within_max_length(smol_tokenizer, template, tmp_path):
    data = write_rows(tmp_path / "train.jsonl", 400)
    samples = list(_stream(data, smol_tokenizer, template, DataReport()))
    stats = {}
    packed = list(pack_stream(_stream(data, smol_tokenizer, template, DataReport()), max_length=256, buffer=64, stats=stats))
    assert all(len(r["input_ids"]) == len(r["labels"]) == sum(r["seq_lengths"]) <= 256 for r in packed)
    assert max(len(r["seq_lengths"]) for r in packed) >= 3  # really packed
    # Cutting the rows at seq_lengths gives back every sample, once (bins only regroup a buffer).
    pieces = []
    for r in packed:
        start = 0
        for n in r["seq_lengths"]:
            pieces.append((tuple(r["input_ids"][start:start + n]), tuple(r["labels"][start:start + n])))
            start += n
    assert sorted(pieces) == sorted((tuple(s["input_ids"]), tuple(s["labels"])) for s in samples)
    assert stats["rows"] == len(packed) and stats["samples"] == len(samples) and 0.8 < stats["fill"] <= 1.0


def test_streaming_needs_max_steps_and_refuses_eval_split(smol_tokenizer, template, tmp_path):
    data = write_rows(tmp_path / "train.jsonl", 10)
    with pytest.raises(ConfigError, match="--streaming needs --max-steps") as e:
        streaming_data(SFTConfig(model="x", data=[str(data)], streaming=True), smol_tokenizer, template)
    assert "--max-steps N" in str(e.value)
    with pytest.raises(ConfigError, match="--eval-data FILE"):
        streaming_data(SFTConfig(model="x", data=[str(data)], streaming=True, max_steps=5, eval_split=0.1), smol_tokenizer, template)
    with pytest.raises(ConfigError, match="dataloader_num_workers must be 0"):
        streaming_data(SFTConfig(model="x", data=[str(data)], streaming=True, max_steps=5,
                                 training_args={"dataloader_num_workers": 2}), smol_tokenizer, template)
    with pytest.raises(ConfigError, match=r"shares must add up to 1 \(they add up to 1.2\)"):
        streaming_data(SFTConfig(model="x", data=[{"path": str(data), "share": 0.6}, {"path": str(data), "share": 0.6}],
                                 streaming=True, max_steps=5), smol_tokenizer, template)


def test_mixing_while_streaming_realises_the_shares(smol_tokenizer, template, tmp_path):
    main = write_rows(tmp_path / "main.jsonl", 3000)
    replay = tmp_path / "replay.jsonl"
    replay.write_text("\n".join(json.dumps({"text": f"General fact number {i}."}) for i in range(150)) + "\n")
    streams = [_stream(main, smol_tokenizer, template, DataReport()), _stream(replay, smol_tokenizer, template, DataReport())]
    mixed, info = mix_streams(streams, [None, None], [None, 0.25], seed=1)
    assert [s["probability"] for s in info["sources"]] == [0.75, 0.25]
    first = [r["source"] for r in itertools.islice(mixed, 2000)]
    share = sum(s.startswith(str(replay)) for s in first) / len(first)
    assert share == pytest.approx(0.25, abs=0.03)  # 150 replay rows are repeated to keep their share
    # Weights are relative rates while streaming (sizes are unknown): weight 3 against 1 is 75%.
    streams = [_stream(main, smol_tokenizer, template, DataReport()), _stream(replay, smol_tokenizer, template, DataReport())]
    mixed, info = mix_streams(streams, [3, None], [None, None], seed=1)
    first = [r["source"] for r in itertools.islice(mixed, 1000)]
    assert sum(s.startswith(str(main)) for s in first) / len(first) == pytest.approx(0.75, abs=0.04)


def test_the_data_stage_streams_through_load_datasets(smol_tokenizer, tmp_path):
    from sftune.train.run import load_datasets

    data = write_rows(tmp_path / "train.jsonl", 800, BAD)
    held = write_rows(tmp_path / "held.jsonl", 20)
    cfg = SFTConfig(model="x", data=[str(data)], eval_data=[str(held)], streaming=True, max_steps=2, packing=True,
                    max_length=256, cache_dir=str(tmp_path / "cache"))
    td = load_datasets(cfg, smol_tokenizer)
    assert td.info["sources"][0]["rows_in"] == 0  # nothing read yet
    assert len(td.eval) == 20  # held-out data is prepared in memory
    rows = list(itertools.islice(td.train, 10))
    assert set(rows[0]) == {"input_ids", "labels", "seq_lengths"}
    src = td.info["sources"][0]
    assert src["rows_in"] > 0 and src["dropped_by_reason"]["malformed JSON"] == 1
    assert td.info["packing"]["rows"] >= 10


def test_parquet_and_save_to_disk_sources_stream_the_same_samples(smol_tokenizer, template, tmp_path):
    import datasets

    rows = [json.loads(l) for l in write_rows(tmp_path / "train.jsonl", 300).read_text().splitlines()]
    ds = datasets.Dataset.from_list(rows)
    ds.to_parquet(str(tmp_path / "train.parquet"))
    ds.save_to_disk(str(tmp_path / "saved"))
    want = [(r["input_ids"], r["labels"]) for r in _stream(tmp_path / "train.jsonl", smol_tokenizer, template, DataReport())]
    for path in (tmp_path / "train.parquet", tmp_path / "saved"):
        got = list(_stream(path, smol_tokenizer, template, DataReport()))
        assert [(r["input_ids"], r["labels"]) for r in got] == want, path
        assert got[5]["source"] == f"{path} row 5"


def test_a_hub_source_is_opened_streaming_and_fails_fast_offline(smol_tokenizer, template, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ds = stream_source(DataSource(path="nobody/no-such-dataset"), Encoder(smol_tokenizer, template), DataReport())
    with pytest.raises(DataError, match="could not download hub dataset 'nobody/no-such-dataset'"):
        next(iter(ds))


def test_the_report_is_logged_when_training_stops_reading(smol_tokenizer, template, tmp_path, caplog):
    import logging

    data = write_rows(tmp_path / "train.jsonl", 2000, BAD)
    it = iter(_stream(data, smol_tokenizer, template, DataReport()))
    with caplog.at_level(logging.INFO, logger="sftune"):
        next(it)
        del it  # what the Trainer does at max_steps: it drops the iterator
    assert "stopped after the rows below" in caplog.text and f"{data}:3" in caplog.text


def test_the_stream_source_docstring_example(smol_tokenizer, template, tmp_path):
    data = tmp_path / "a.jsonl"
    data.write_text('{"text": "hello"}\n{"text": ""}\n')
    report = DataReport()
    assert [r["source"] for r in _stream(data, smol_tokenizer, template, report)] == [f"{data}:1"]
    assert dict(report.dropped) == {"empty text": 1} and report.examples["empty text"] == [f"{data}:2"]
