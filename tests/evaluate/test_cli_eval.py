"""End to end: ``sftune eval`` on a tiny "fine-tuned" folder and a tiny adapter; asserts on the files."""

from __future__ import annotations

import json

from sftune.cli import main

JSON_KEYS = ["sftune_version", "created", "model", "base", "adapter", "settings", "heldout", "forgetting", "questions", "scores", "notes", "seconds"]


def test_eval_full_model_writes_reports(tuned_model_dir, tiny_model_dir, qa_file, tmp_path, capsys):
    out = tmp_path / "report"
    general = tmp_path / "general.jsonl"  # a short text keeps the test fast; the bundled default is used below
    general.write_text('{"text": "Water boils at 100 degrees Celsius at sea level."}\n{"text": "水在海平面上一百度沸腾。"}\n', encoding="utf-8")
    rc = main(["eval", "--model", str(tuned_model_dir), "--data", str(qa_file), "--questions", str(qa_file),
               "--general-text", str(general), "--forgetting-threshold", "0.5", "--output", str(out), "--max-new-tokens", "6"])
    assert rc == 0
    d = json.loads((out / "eval.json").read_text(encoding="utf-8"))
    assert list(d) == JSON_KEYS
    assert d["base"] == str(tiny_model_dir) and d["adapter"] is False  # read from sftune_config.yaml
    assert d["settings"]["max_length"] == 256  # the run's own setting
    h = d["heldout"]
    assert h["fine_tuned"]["tokens"] == h["base"]["tokens"] > 0 and h["fine_tuned"]["rows"] == 3
    assert h["fine_tuned"]["loss"] != h["base"]["loss"]
    f = d["forgetting"]
    assert f["data"] == str(general) and f["threshold"] == 0.5 and f["fine_tuned"]["rows"] == 2
    assert abs(f["relative_change"] - (f["fine_tuned"]["perplexity"] / f["base"]["perplexity"] - 1)) < 1e-12
    assert [q["question"] for q in d["questions"]] == ["What is the capital of France?", "你是谁？", "Say hi\n\npolitely"]
    assert [q["reference"] for q in d["questions"]] == ["Paris", "我是 Kestrel。", "Hello | there"]
    for q in d["questions"]:
        for side in ("base", "fine_tuned"):
            a = q[side]
            assert a["completion_tokens"] <= 6 and set(a["scores"]) == {"exact_match", "contains", "f1", "rouge_l"}
    assert d["scores"]["fine_tuned"]["n"] == 3 and d["scores"]["base"]["n"] == 3
    md = (out / "eval.md").read_text(encoding="utf-8")
    assert "| metric | base | fine-tuned | change |" in md and "held-out perplexity" in md
    assert "Hello \\| there" in md  # pipes in answers do not break the table
    html = (out / "eval.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "你是谁？" in html and "<script" not in html
    printed = capsys.readouterr().out
    assert "general-text perplexity" in printed and str(out / "eval.json") in printed


def test_eval_adapter_default_questions_no_compare_free(adapter_dir, tmp_path):
    out = tmp_path / "r"
    assert main(["eval", "--model", str(adapter_dir), "--output", str(out), "--max-new-tokens", "4", "--no-forgetting"]) == 0
    d = json.loads((out / "eval.json").read_text(encoding="utf-8"))
    assert d["adapter"] is True and d["heldout"] is None and d["forgetting"] is None and d["scores"] is None
    assert [q["group"] for q in d["questions"]] == ["identity"] * 4 + ["general"] * 4  # the bundled questions
    assert all(q["base"]["text"] is not None for q in d["questions"])


def test_eval_no_compare_and_missing_base(tuned_model_dir, tiny_model_dir, tmp_path):
    out = tmp_path / "r"
    assert main(["eval", "--model", str(tiny_model_dir), "--output", str(out), "--no-questions"]) == 0
    d = json.loads((out / "eval.json").read_text(encoding="utf-8"))
    assert d["base"] is None and "pass --base MODEL" in d["notes"][0]
    replay_rows = sum(1 for line in open(d["forgetting"]["data"], encoding="utf-8") if line.strip())
    assert d["forgetting"]["data"].endswith("replay.jsonl") and d["forgetting"]["fine_tuned"]["rows"] == replay_rows
    assert d["forgetting"]["relative_change"] is None
    assert "base: not compared" in (out / "eval.md").read_text(encoding="utf-8")


def test_eval_missing_data_is_a_clear_error(tuned_model_dir, tmp_path, capsys):
    assert main(["eval", "--model", str(tuned_model_dir), "--data", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path)]) == 2
    assert "nope.jsonl" in capsys.readouterr().err


def test_eval_unusable_inputs_exit_2_naming_the_file(tuned_model_dir, tmp_path, capsys):
    bad = tmp_path / "no_answers.jsonl"
    bad.write_text('{"instruction": "Q without an answer"}\n', encoding="utf-8")
    args = ["eval", "--model", str(tuned_model_dir), "--output", str(tmp_path / "o"), "--no-forgetting", "--no-compare"]
    assert main(args + ["--data", str(bad), "--no-questions"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}" in err and "no rows left to evaluate" in err and "missing" in err
    broken = tmp_path / "broken.jsonl"
    broken.write_text("not json\n", encoding="utf-8")
    assert main(args + ["--questions", str(broken)]) == 2
    assert "no usable questions" in capsys.readouterr().err
