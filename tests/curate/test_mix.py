"""`curate mix`: the mixture is exactly the one training's `sftune.data.mixing.mix` makes."""

from __future__ import annotations

import json

import datasets
from curate_helpers import chat, read_jsonl, write_jsonl

from sftune.cli import main
from sftune.curate.io import CurateReport
from sftune.curate.mix import conversations_to_dataset, dataset_to_conversations, mix_conversations
from sftune.data.conversation import Conversation, Message, Source
from sftune.data.mixing import mix


def _sets():
    a = [chat(f"question a{i}", f"answer a{i}", line=i + 1) for i in range(30)]
    b = [Conversation.text(f"replay paragraph {i}.") for i in range(4)]
    c = [Conversation.completion(f"{i}+1=", str(i + 1)) for i in range(10)]
    return a, b, c


def test_round_trip_keeps_kinds_flags_sources_and_meta():
    convs = [
        Conversation.chat([Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello", False),
                           Message("user", "Again"), Message("assistant", "Hello!")], source=Source("x.jsonl", line=3)),
        Conversation.completion("1+1=", "2", source=Source("y.parquet", index=7)),
        Conversation(messages=[Message("text", "plain", True)], kind="text", meta={"lang": "en"}),
    ]
    back = dataset_to_conversations(conversations_to_dataset(convs))
    assert back == convs


def test_same_rows_and_order_as_the_training_mix():
    a, b, c = _sets()
    shares, weights = [None, 0.2, None], [None, None, 0.5]
    rows = mix_conversations([a, b, c], weights, shares, seed=7)
    # Training mixes datasets of tokenised rows; the sampling depends only on sizes, options and seed,
    # so mixing datasets that hold each row's position shows which rows training would pick, in order.
    flat = a + b + c
    positions = [datasets.Dataset.from_dict({"i": list(range(s, s + len(x)))}) for s, x in ((0, a), (30, b), (34, c))]
    expected, info = mix(positions, weights, shares, seed=7)
    assert rows == [flat[i] for i in expected["i"]]
    # 30 natural + 10 * 0.5 = 35 rows are 80%, so the replay set gets 35 / 0.8 * 0.2 = 8.75 -> 9 rows.
    assert [s["rows_out"] for s in info["sources"]] == [30, 9, 5]
    assert len(rows) == 44


def test_report_counts_unused_and_repeated_rows_and_is_deterministic():
    a, b, c = _sets()
    report = CurateReport(command="mix")
    rows = mix_conversations([a, b, c], [None, None, 0.5], [None, 0.2, None], seed=7, report=report, names=["a", "b", "c"])
    assert report.rows_in == 44 and report.kept == len(rows) == 44
    # c is under-sampled to 5 of 10 rows: 5 rows unused; b is over-sampled 4 -> 9 (2 whole passes + 1): all used.
    assert dict(report.dropped) == {"not_sampled": 5}
    assert all("c row" in e and "under-sampled to 5 of 10" in e for e in report.examples["not_sampled"])
    srcs = report.details["mixture"]["sources"]
    assert [(s["name"], s["rows_out"], s["unused_rows"], s["repeated_rows"]) for s in srcs] == [
        ("a", 30, 0, 0), ("b", 9, 0, 4), ("c", 5, 5, 0)]
    assert srcs[1]["requested_share"] == 0.2 and srcs[1]["share"] == round(9 / 44, 4)
    assert any("5 extra copies" in n for n in report.notes)  # 44 written = 39 distinct rows + 5 repeats
    assert mix_conversations([a, b, c], [None, None, 0.5], [None, 0.2, None], seed=7) == rows
    assert mix_conversations([a, b, c], [None, None, 0.5], [None, 0.2, None], seed=8) != rows


def test_cli_mix_end_to_end(tmp_path, capsys):
    a, b, _ = _sets()
    fa, fb = write_jsonl(tmp_path / "a.jsonl", a), tmp_path / "b.json"
    fb.write_text(json.dumps([{"text": c.messages[0].content} for c in b]))
    before = fa.read_bytes(), fb.read_bytes()
    out = tmp_path / "mixed.jsonl"
    rc = main(["curate", "mix", "--data", f"{fa},share=0.75", "--data", f"{fb},share=0.25", "--output", str(out), "--seed", "3"])
    assert rc == 0 and (fa.read_bytes(), fb.read_bytes()) == before
    rows = read_jsonl(out)
    # Every source has a share: the total stays 34 rows, 0.75 -> 26 chat rows (4 unused), 0.25 -> 8 text rows (2 passes).
    assert len(rows) == 34 and sum("text" in r for r in rows) == 8 and sum("messages" in r for r in rows) == 26
    rep = json.loads((tmp_path / "mixed.report.json").read_text())
    assert rep["rows_in"] == 34 and rep["kept"] == 34 and rep["dropped_by_reason"] == {"not_sampled": 4}
    assert [s["rows_out"] for s in rep["details"]["mixture"]["sources"]] == [26, 8]
    assert rep["details"]["mixture"]["seed"] == 3
    assert "mixed.report.json" in capsys.readouterr().out


def test_cli_mix_impossible_shares_is_an_error(tmp_path, capsys):
    a, b, _ = _sets()
    fa, fb = write_jsonl(tmp_path / "a.jsonl", a), write_jsonl(tmp_path / "b.jsonl", b)
    rc = main(["curate", "mix", "--data", f"{fa},share=0.7", "--data", f"{fb},share=0.7", "--output", str(tmp_path / "m.jsonl")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "a.jsonl" in err and "add up to" in err


def test_tool_rows_round_trip_and_mix_with_their_calls():
    from curate_helpers import tool_chat

    convs = [tool_chat("Oslo", line=1), tool_chat("Paris", line=2, answer=False), chat("plain", "row", line=3)]
    back = dataset_to_conversations(conversations_to_dataset(convs))
    assert back == convs  # every field: tools, calls (object and string arguments), ids, names, reasoning, null content
    assert [c.to_messages() for c in back] == [c.to_messages() for c in convs]
    rows = mix_conversations([convs[:2], convs[2:]], [2, None], None, seed=1)
    assert len(rows) == 5 and sorted(map(repr, rows)) == sorted(map(repr, [convs[0], convs[0], convs[1], convs[1], convs[2]]))


def test_cli_mix_writes_tool_rows_sftune_reads_back_unchanged(tmp_path):
    from curate_helpers import TOOL_FIXTURE, tool_chat

    from sftune.config import DataSource
    from sftune.data.readers import read_conversations
    from sftune.data.report import DataReport

    fa = write_jsonl(tmp_path / "agent.jsonl", [tool_chat("Oslo"), tool_chat("Lima")])
    out = tmp_path / "mixed.jsonl"
    assert main(["curate", "mix", "--data", str(fa), "--data", str(TOOL_FIXTURE), "--output", str(out)]) == 0
    want = read_conversations(DataSource(path=str(fa)), DataReport()) + read_conversations(DataSource(path=str(TOOL_FIXTURE)), DataReport())
    reading = DataReport()
    got = read_conversations(DataSource(path=str(out)), reading)
    assert reading.n_dropped == 0 and len(got) == len(want) == 6

    def key(c):  # what training renders: the template's messages and the tools
        return json.dumps([c.to_messages(), c.tools], sort_keys=True, ensure_ascii=False)

    assert sorted(map(key, got)) == sorted(map(key, want))
    assert sum(bool(c.tools) for c in got) == sum(bool(c.tools) for c in want) >= 5
    assert any(m.tool_calls for c in got for m in c.messages) and any(m.reasoning for c in got for m in c.messages)
