"""End to end: `sftune prepare` / `sftune inspect` on fixture files, asserting on what they write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sftune.cli import main
from sftune.data.tokenize import IGNORE_INDEX

FIXTURES = Path(__file__).parent / "fixtures"


def prepare(tok_dir, data, out: Path, *extra) -> int:
    # --cache-dir keeps the prepared-data cache inside the test's folder.
    return main(["prepare", "--model", str(tok_dir), "--data", str(data), "--output", str(out),
                 "--cache-dir", str(out.parent / "cache"), *extra])


def trained_texts(tokenizer, row) -> list[str]:
    """The text of each run of trained tokens (label != -100), decoded from the labels themselves."""
    runs, cur = [], []
    for label in row["labels"] + [IGNORE_INDEX]:
        if label != IGNORE_INDEX:
            cur.append(label)
        elif cur:
            runs.append(tokenizer.decode(cur))
            cur = []
    return runs


def test_prepare_malformed_file_keeps_every_valid_row_in_order(smol_tokenizer_dir, smol_tokenizer, tmp_path, capsys):
    import datasets

    out = tmp_path / "out"
    assert prepare(smol_tokenizer_dir, FIXTURES / "malformed.jsonl", out) == 0
    ds = datasets.load_from_disk(str(out))
    assert {"input_ids", "labels"} <= set(ds.column_names)
    assert [s.rsplit(":", 1)[1] for s in ds["source"]] == ["1", "4", "13", "15"]  # input order
    # The model's own (ChatML) template: each answer and its <|im_end|> are trained, nothing else.
    assert [trained_texts(smol_tokenizer, r) for r in ds] == [
        ["Hello.<|im_end|>"], ["4<|im_end|>"], ["你好!有什么可以帮你?<|im_end|>"], ["Done.<|im_end|>"],
    ]
    report = json.loads((out / "data_report.json").read_text())
    assert (report["rows_in"], report["kept"], report["dropped"]) == (14, 4, 10)
    assert report["dropped_by_reason"]["malformed JSON"] == 1
    assert report["examples"]["not valid UTF-8"] == [f"{FIXTURES / 'malformed.jsonl'}:12"]
    assert (out / "chat_template.jinja").read_text().startswith("{%")
    printed = capsys.readouterr().out
    assert "rows read: 14   kept: 4   dropped: 10" in printed and "malformed.jsonl:2" in printed


def test_prepare_strict_stops_with_file_and_line(smol_tokenizer_dir, tmp_path, capsys):
    assert prepare(smol_tokenizer_dir, FIXTURES / "malformed.jsonl", tmp_path / "out", "--strict") == 2
    err = capsys.readouterr().err
    assert "malformed.jsonl:2: malformed JSON" in err and "fix:" in err


def test_prepare_llama3_template_and_last_turn_mask(smol_tokenizer_dir, smol_tokenizer, tmp_path):
    import datasets

    out = tmp_path / "out"
    assert prepare(smol_tokenizer_dir, FIXTURES / "sharegpt.jsonl", out, "--template", "llama3", "--mask", "last") == 0
    ds = datasets.load_from_disk(str(out))
    text = smol_tokenizer.decode(ds[0]["input_ids"])
    # The llama3 template opens with the tokenizer's own bos_token (SmolLM2's is <|im_start|>).
    bos = smol_tokenizer.bos_token or ""
    assert text.startswith(bos + "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>")
    # Only the last assistant turn ("4") and its end-of-turn marker are trained, not "Hello.".
    assert trained_texts(smol_tokenizer, ds[0]) == ["4<|eot_id|>"]
    assert trained_texts(smol_tokenizer, ds[1]) == ["你好!<|eot_id|>"]
    assert "<|start_header_id|>" in (out / "chat_template.jinja").read_text()


@pytest.mark.parametrize(
    "fixture, expected",
    [
        ("alpaca.csv", [["Bonjour<|im_end|>"], ["Line one,\nline two.<|im_end|>"], ["Red.<|im_end|>"]]),
        ("messages.jsonl", [["Hello.<|im_end|>"], ["Good answer.<|im_end|>"], ["Let me check.<|im_end|>", "21 °C.<|im_end|>"]]),
        ("prompt_completion_chat.jsonl", [["Paris.<|im_end|>"]]),
        ("prompt_completion.jsonl", [[" Paris.<|im_end|>"], [" 4<|im_end|>"]]),  # raw text + EOS
        ("text.jsonl", [["The quick brown fox jumps over the lazy dog.<|im_end|>"], ["日本語のテキスト。<|im_end|>"]]),
    ],
)
def test_prepare_each_layout(smol_tokenizer_dir, smol_tokenizer, tmp_path, fixture, expected):
    import datasets

    out = tmp_path / "out"
    assert prepare(smol_tokenizer_dir, FIXTURES / fixture, out, "--no-cache") == 0
    ds = datasets.load_from_disk(str(out))
    assert [trained_texts(smol_tokenizer, r) for r in ds] == expected


def test_prepare_column_mapping_from_yaml(smol_tokenizer_dir, smol_tokenizer, tmp_path):
    import datasets
    import yaml

    cfg = tmp_path / "data.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": str(smol_tokenizer_dir),
        "data": [{"path": str(FIXTURES / "sharegpt_custom.json"),
                  "columns": {"conversations": "dialog", "role": "speaker", "content": "text", "user": "Q", "assistant": "A"}}],
        "system_prompt": "You are a geography tutor.",
    }))
    out = tmp_path / "out"
    assert main(["prepare", "--config", str(cfg), "--output", str(out), "--no-cache"]) == 0
    ds = datasets.load_from_disk(str(out))
    assert [trained_texts(smol_tokenizer, r) for r in ds] == [["Paris.<|im_end|>"], ["Rome.<|im_end|>", "You're welcome.<|im_end|>"]]
    assert "You are a geography tutor." in smol_tokenizer.decode(ds[0]["input_ids"])


def test_prepare_twice_into_the_same_folder(smol_tokenizer_dir, tmp_path):
    import datasets

    out = tmp_path / "out"
    assert prepare(smol_tokenizer_dir, FIXTURES / "text.jsonl", out) == 0
    assert prepare(smol_tokenizer_dir, FIXTURES / "alpaca.json", out) == 0  # second run: from a different file
    assert len(datasets.load_from_disk(str(out))) == 3


def test_inspect_prints_highlight_and_stats_and_writes_png(smol_tokenizer_dir, tmp_path, capsys):
    png = tmp_path / "mask.png"
    rc = main(["inspect", "--model", str(smol_tokenizer_dir), "--data", str(FIXTURES / "malformed.jsonl"),
               "--png", str(png), "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "[[Hello.<|im_end|>]]" in out  # not a terminal: trained runs in brackets
    assert "rows: 4" in out and "trained tokens" in out and "p50" in out
    assert "rows read: 14" in out and "malformed JSON: 1" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_prepare_and_inspect_show_what_packing_makes_of_the_rows(smol_tokenizer_dir, tmp_path, capsys):
    import datasets

    from sftune.data.packing import pack, pack_stats

    out = tmp_path / "out"
    assert prepare(smol_tokenizer_dir, FIXTURES / "sharegpt.jsonl", out, "--packing", "--max-length", "256") == 0
    printed = capsys.readouterr().out
    rows = datasets.load_from_disk(str(out))  # the saved dataset holds the samples; packing comes later
    assert "seq_lengths" not in rows.column_names
    s = pack_stats(pack(rows, 256), 256)
    assert s["samples"] == len(rows)
    line = f"packing: {len(rows)} samples -> {s['rows']} rows of at most 256 tokens ({s['fill']:.1%} full"
    assert line in printed
    rc = main(["inspect", "--model", str(smol_tokenizer_dir), "--data", str(FIXTURES / "sharegpt.jsonl"), "--packing",
               "--max-length", "256", "--png", str(tmp_path / "m.png"), "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0 and line in capsys.readouterr().out
