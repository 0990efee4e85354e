"""File types: every row comes out with its location; broken rows come out as errors, not lost files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sftune.config import DataSource
from sftune.data.files import iter_rows, source_kind
from sftune.data.readers import read_conversations
from sftune.data.report import DataError, DataReport

FIXTURES = Path(__file__).parent / "fixtures"
ROWS = [
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]},
    {"messages": [{"role": "user", "content": "你好 🙂"}, {"role": "assistant", "content": "你好!"}]},
    {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
]


def rows(path, split="train"):
    """[(line, index, row dict or error reason)] for a source."""
    return [(s.line, s.index, r if isinstance(r, dict) else r.reason) for s, r in iter_rows(str(path), split)]


def answers(path, **kw) -> list[str]:
    convs = read_conversations(DataSource(path=str(path), **kw), DataReport(strict=True))
    return [c.messages[-1].content for c in convs]


# ---- .jsonl -----------------------------------------------------------------------------------
def test_jsonl_lines_blank_lines_and_bom(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"text": "a"}\n\n   \n{"text": "b"}\r\n{"text": "c"}')  # BOM, blanks, CRLF, no final newline
    assert rows(p) == [(1, 0, {"text": "a"}), (4, 1, {"text": "b"}), (5, 2, {"text": "c"})]


def test_jsonl_bad_lines_are_single_errors(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'{"text": "a"}\n{"text": \n"just a string"\n{"text": "\xff"}\n{"text": "d"}\n')
    assert rows(p) == [
        (1, 0, {"text": "a"}),
        (2, 1, "malformed JSON"),
        (3, 2, "row is not an object"),
        (4, 3, "not valid UTF-8"),
        (5, 4, {"text": "d"}),
    ]
    errs = {s.line: r for s, r in iter_rows(str(p)) if isinstance(r, DataError)}
    assert "parser: Expecting value at column 10" in errs[2].fix
    assert "byte 0xff at column 11" in errs[4].fix


# ---- .json ------------------------------------------------------------------------------------
def test_json_array_element_lines(tmp_path):
    p = tmp_path / "a.json"
    text = json.dumps(ROWS, indent=2, ensure_ascii=False)
    p.write_text(text)
    starts = [i + 1 for i, line in enumerate(text.splitlines()) if line == "  {"]  # where each element begins
    got = rows(p)
    assert [(line, index) for line, index, _ in got] == [(starts[0], 0), (starts[1], 1), (starts[2], 2)] == [(2, 0), (14, 1), (26, 2)]
    assert [r for *_, r in got] == ROWS
    compact = tmp_path / "b.json"
    compact.write_text("[" + ",\n ".join(json.dumps(r) for r in ROWS) + ",\n]")  # one per line, trailing comma
    assert [(line, r) for line, _, r in rows(compact)] == [(1, ROWS[0]), (2, ROWS[1]), (3, ROWS[2])]


def test_json_object_with_one_list(tmp_path):
    p = tmp_path / "a.json"
    p.write_text('{"version": 2,\n "data": [\n  {"text": "x"},\n  {"text": "y"}\n ],\n "note": "z"}')
    assert rows(p) == [(3, 0, {"text": "x"}), (4, 1, {"text": "y"})]


def test_json_object_without_one_list_is_unreadable(tmp_path):
    p = tmp_path / "a.json"
    p.write_text('{"a": [1], "b": [2]}')
    [(src, err)] = list(iter_rows(str(p)))
    assert err.reason == "unreadable file" and "2 list values" in err.fix and "'a', 'b'" in err.fix


def test_json_broken_element_loses_only_itself():
    assert rows(FIXTURES / "malformed.json") == [
        (2, 0, {"text": "first"}),
        (3, 1, "malformed JSON"),
        (5, 2, {"text": "third"}),
        (6, 3, "row is not an object"),
        (7, 4, {"text": "fifth"}),
    ]
    report = DataReport()
    convs = read_conversations(DataSource(path=str(FIXTURES / "malformed.json")), report)
    assert [c.messages[0].content for c in convs] == ["first", "third", "fifth"]
    assert report.rows_in == 5 and dict(report.dropped) == {"malformed JSON": 1, "row is not an object": 1}


def test_json_missing_comma_and_truncation(tmp_path):
    p = tmp_path / "a.json"
    p.write_text('[\n  {"text": "a"}\n  {"text": "b"},\n  {"text": "c"}')  # no comma after a; no closing ]
    assert rows(p) == [(2, 0, {"text": "a"}), (3, None, "malformed JSON"), (3, 1, {"text": "b"}), (4, 2, {"text": "c"})]


def test_json_non_utf8_byte_spoils_only_its_element(tmp_path):
    p = tmp_path / "a.json"
    p.write_bytes(b'[\n  {"text": "ok"},\n  {"text": "caf\xe9"},\n  {"text": "fine"}\n]\n')
    assert rows(p) == [(2, 0, {"text": "ok"}), (3, 1, "not valid UTF-8"), (4, 2, {"text": "fine"})]


def test_json_not_an_array(tmp_path):
    p = tmp_path / "a.json"
    p.write_text('"hello"')
    [(src, err)] = list(iter_rows(str(p)))
    assert err.reason == "unreadable file" and "array of objects" in err.fix
    empty = tmp_path / "e.json"
    empty.write_text("  \n")
    assert rows(empty) == []


# ---- .csv -------------------------------------------------------------------------------------
def test_csv_lines_multiline_and_bad_rows(tmp_path):
    p = tmp_path / "a.csv"
    p.write_bytes(b'text,note\n"line one\nline two",x\n\nplain,y\ncaf\xe9,z\nshort\ntoo,many,fields\n')
    assert rows(p) == [
        (2, 0, {"text": "line one\nline two", "note": "x"}),
        (5, 1, {"text": "plain", "note": "y"}),
        (6, 2, "not valid UTF-8"),
        (7, 3, {"text": "short", "note": None}),
        (8, 4, "wrong number of CSV fields"),
    ]


# ---- .parquet ---------------------------------------------------------------------------------
def test_parquet_rows_and_conversations(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), p)
    assert [(line, index) for line, index, _ in rows(p)] == [(None, 0), (None, 1), (None, 2)]
    assert answers(p) == ["Hello.", "你好!", "4"]
    report = DataReport()
    [conv, *_] = read_conversations(DataSource(path=str(p)), report)
    assert str(conv.source) == f"{p} row 0"


def test_corrupt_parquet_is_an_unreadable_file(tmp_path):
    p = tmp_path / "bad.parquet"
    p.write_bytes(b"PAR1 this is not parquet")
    report = DataReport()
    assert read_conversations(DataSource(path=str(p)), report) == []
    assert dict(report.dropped) == {"unreadable file": 1} and report.rows_in == 1
    with pytest.raises(DataError, match=r"bad.parquet: unreadable file\n  fix: check the file"):
        read_conversations(DataSource(path=str(p)), DataReport(strict=True))


# ---- save_to_disk folders -----------------------------------------------------------------------
def test_save_to_disk_dataset_and_dataset_dict(tmp_path):
    import datasets

    ds = datasets.Dataset.from_list(ROWS)
    ds.save_to_disk(str(tmp_path / "ds"))
    assert answers(tmp_path / "ds") == ["Hello.", "你好!", "4"]
    dd = datasets.DatasetDict({"train": ds, "test": datasets.Dataset.from_list(ROWS[:1])})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert answers(tmp_path / "dd") == ["Hello.", "你好!", "4"]
    assert answers(tmp_path / "dd", split="test") == ["Hello."]
    with pytest.raises(DataError, match=r"no split 'validation' \(splits: train, test\)(.|\n)*split=train"):
        answers(tmp_path / "dd", split="validation")


def test_folder_that_is_not_a_dataset(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="not a dataset written by datasets.save_to_disk"):
        answers(tmp_path)


# ---- missing files and hub names --------------------------------------------------------------
@pytest.mark.parametrize("name", ["nope.jsonl", "data/train.json", "./train", "/abs/missing", "sub/dir/file"])
def test_missing_local_path_is_not_sent_to_the_hub(name):
    t0 = time.perf_counter()
    with pytest.raises(DataError) as e:
        source_kind(name)
    assert f"{name}: data file not found" in str(e.value) and "check the path" in str(e.value)
    assert time.perf_counter() - t0 < 5  # answered locally, never after hub retries


@pytest.mark.parametrize("name", ["tatsu-lab/alpaca", "teknium/OpenHermes-2.5", "squad"])
def test_hub_names(name):
    assert source_kind(name) == "hub"


def test_hub_name_offline_says_why_and_the_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as e:
        read_conversations(DataSource(path="tatsu-lab/alpaca"), DataReport())
    msg = str(e.value)
    assert "could not download hub dataset 'tatsu-lab/alpaca'" in msg
    assert "HF_HUB_OFFLINE" in msg and "pass a local file" in msg


def test_unsupported_file_type(tmp_path):
    p = tmp_path / "a.xml"
    p.write_text("<a/>")
    with pytest.raises(DataError, match=r"unsupported file type '.xml'"):
        source_kind(str(p))
