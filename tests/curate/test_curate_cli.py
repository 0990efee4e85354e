"""`sftune curate ...` end to end through sftune.cli.main: files in, files and reports out."""

from __future__ import annotations

import json

import pytest
from curate_helpers import chat, read_jsonl, write_jsonl

from sftune.cli import main

Q = "What is the capital of France?"


def report_of(out):
    return json.loads(out.with_name(out.stem + ".report.json").read_text())


def test_filter_end_to_end_and_input_untouched(tmp_path, capsys):
    src = write_jsonl(tmp_path / "raw.jsonl", [
        chat(Q, "The capital of France is Paris."),
        chat(Q, "  "),
        chat(Q, "I am happy. I am happy. I am happy. I am happy."),
        chat(Q, "The capital of France is Paris, and it is also the"),
        chat(Q, "Paris."),
    ])
    before = src.read_bytes()
    out = tmp_path / "clean.jsonl"
    rc = main(["curate", "filter", "--data", str(src), "--output", str(out), "--repetition", "0.3", "--truncated"])
    assert rc == 0
    assert src.read_bytes() == before
    rows = read_jsonl(out)
    assert [r["messages"][-1]["content"] for r in rows] == ["The capital of France is Paris.", "Paris."]
    rep = report_of(out)
    assert rep["command"] == "filter" and rep["rows_in"] == 5 and rep["kept"] == 2
    assert rep["dropped_by_reason"] == {"empty_answer": 1, "repetition": 1, "truncated": 1}
    assert any("raw.jsonl:2" in e for e in rep["examples"]["empty_answer"])
    printed = capsys.readouterr().out
    assert "dropped" in printed and "clean.report.json" in printed


def test_output_equal_to_input_is_refused(tmp_path, capsys):
    src = write_jsonl(tmp_path / "raw.jsonl", [chat(Q, "Paris.")])
    before = src.read_bytes()
    rc = main(["curate", "dedup", "--data", str(src), "--output", str(src)])
    assert rc == 2
    assert "never modifies its input" in capsys.readouterr().err
    assert src.read_bytes() == before


def test_filter_token_bounds_with_model_tokenizer(tmp_path, tiny_model_dir):
    src = write_jsonl(tmp_path / "raw.jsonl", [chat(Q, "Paris."), chat(Q, "Paris is the capital. " * 30)])
    out = tmp_path / "short.jsonl"
    rc = main(["curate", "filter", "--data", str(src), "--output", str(out), "--model", str(tiny_model_dir), "--max-answer-tokens", "50"])
    assert rc == 0
    assert len(read_jsonl(out)) == 1 and report_of(out)["dropped_by_reason"] == {"max_answer_tokens": 1}


def test_filter_token_bounds_count_tool_rows_as_training_renders_them(tmp_path, tiny_model_dir):
    # --template/--template-kwargs/--reasoning are training's flags: the counted length is the encoded row's
    from curate_helpers import tool_chat
    from transformers import AutoTokenizer

    from sftune.data.templates import resolve_template
    from sftune.data.tokenize import Encoder

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    rows = [tool_chat("Oslo"), chat(Q, "Paris.")]
    enc = Encoder(tok, resolve_template("qwen3", tok), max_length=100_000, template_kwargs={"enable_thinking": False}, reasoning="drop")
    n = len(enc.encode(rows[0])["input_ids"])
    src = write_jsonl(tmp_path / "agent.jsonl", rows)
    flags = ["--model", str(tiny_model_dir), "--template", "qwen3", "--template-kwargs", "enable_thinking=false", "--reasoning", "drop"]
    for bound, kept in ((n, 2), (n - 1, 1)):
        out = tmp_path / f"f{bound}.jsonl"
        assert main(["curate", "filter", "--data", str(src), "--output", str(out), "--max-tokens", str(bound), *flags]) == 0
        assert len(read_jsonl(out)) == kept
    assert report_of(out)["examples"]["max_tokens"] == [f"{src}:1 ({n} tokens, bound {n - 1})"]
    assert read_jsonl(tmp_path / f"f{n}.jsonl")[0]["tools"] == rows[0].tools  # written with its tools and calls


def test_dedup_reads_other_formats_and_writes_messages(tmp_path):
    alpaca = [
        {"instruction": "Explain gravity.", "input": "", "output": "Gravity pulls masses towards each other, which is why things fall down to the ground."},
        {"instruction": "explain gravity", "input": "", "output": "Gravity pulls masses towards each other, which is why things fall down to the ground!"},
        {"instruction": "Explain gravity.", "input": "", "output": "Gravity pulls masses towards each other, which is why things fall down to the earth."},
        {"instruction": "Name a fruit.", "input": "", "output": "An apple."},
    ]
    src = tmp_path / "alpaca.json"
    src.write_text(json.dumps(alpaca))
    out = tmp_path / "dedup.jsonl"
    rc = main(["curate", "dedup", "--data", str(src), "--output", str(out), "--threshold", "0.7"])
    assert rc == 0
    rows = read_jsonl(out)
    assert len(rows) == 2 and all("messages" in r for r in rows)
    assert rows[0]["messages"][-1]["content"].startswith("Gravity pulls")
    assert report_of(out)["dropped_by_reason"] == {"exact_duplicate": 1, "near_duplicate": 1}


def test_decontaminate_end_to_end(tmp_path):
    question = "Which river flows through the capital city of Hungary and also through the city of Vienna in Austria?"
    ev = write_jsonl(tmp_path / "eval.jsonl", [chat(question, "The Danube.")])
    train = write_jsonl(tmp_path / "train.jsonl", [chat(question, "The Danube."), chat("Hi", "Hello!")])
    out = tmp_path / "decon.jsonl"
    rc = main(["curate", "decontaminate", "--data", str(train), "--eval", str(ev), "--output", str(out)])
    assert rc == 0
    assert [r["messages"][0]["content"] for r in read_jsonl(out)] == ["Hi"]
    rep = report_of(out)
    assert rep["dropped_by_reason"] == {"contaminated": 1}
    assert rep["details"]["hits"][0]["eval_row"].endswith("eval.jsonl:1") and rep["details"]["hits"][0]["train_rows"] == 1


def test_distill_and_best_of_k_end_to_end(tmp_path, tiny_model_dir):
    src = tmp_path / "prompts.jsonl"  # a prompt-only row, and (second file) an alpaca row with an answer
    src.write_text(json.dumps({"messages": [{"role": "user", "content": "Name a colour."}]}) + "\n")
    src2 = tmp_path / "alpaca.json"
    src2.write_text(json.dumps([{"instruction": "Say hi.", "input": "", "output": "Hi!"}]))
    out = tmp_path / "distilled.jsonl"
    args = ["--data", str(src), "--data", str(src2), "--model", str(tiny_model_dir), "--max-new-tokens", "5", "--no-progress"]
    assert main(["curate", "distill", *args, "--output", str(out), "--keep-truncated"]) == 0
    rows = read_jsonl(out)
    assert len(rows) == 2 and all(r["messages"][-1]["role"] == "assistant" for r in rows)
    assert report_of(out)["kept"] == 2
    assert main(["curate", "distill", *args, "--output", str(out), "--keep-truncated"]) == 0  # resumed: nothing to do
    assert len(read_jsonl(out)) == 2 and report_of(out)["details"]["resumed_rows"] == 2

    reward = tmp_path / "toy_reward.py"
    reward.write_text("def longest(prompt, answer):\n    return len(answer)\n")
    best = tmp_path / "best.jsonl"
    assert main(["curate", "best-of-k", *args, "--output", str(best), "-k", "3", "--reward", f"{reward}:longest", "--keep-scores"]) == 0
    for r in read_jsonl(best):
        scores = [c["score"] for c in r["meta"]["candidates"]]
        assert len(scores) == 3 and r["meta"]["score"] == max(scores)


def test_best_of_k_needs_one_reward(tmp_path, capsys):
    src = write_jsonl(tmp_path / "p.jsonl", [chat(Q)])
    rc = main(["curate", "best-of-k", "--data", str(src), "--output", str(tmp_path / "o.jsonl")])
    assert rc == 2 and "exactly one of --reward" in capsys.readouterr().err


@pytest.fixture
def one_torch_thread():
    """On a shared, loaded 2-core machine two torch threads wait on each other (one generation step
    took seconds; a best-of-3 prompt 8 minutes instead of 21 s): one thread is faster there."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
def test_distill_and_best_of_k_with_the_default_model(tmp_path, one_torch_thread):
    """The real SmolLM2-135M-Instruct as teacher/policy on 2 prompts, and a toy reward."""
    src = write_jsonl(tmp_path / "prompts.jsonl", [chat("What is the capital of France?"), chat("Name three colours.")])
    out = tmp_path / "distilled.jsonl"
    args = ["--data", str(src), "--model", "default", "--max-new-tokens", "24", "--no-progress"]
    assert main(["curate", "distill", *args, "--output", str(out), "--keep-truncated"]) == 0
    rows = read_jsonl(out)
    assert len(rows) == 2 and all(r["messages"][-1]["content"].strip() for r in rows)
    assert rows[0]["meta"]["teacher"] == "default"
    reward = tmp_path / "toy_reward.py"
    reward.write_text("def mentions_paris(prompt, answer):\n    return float('paris' in answer.lower()) - len(answer) / 1e4\n")
    best = tmp_path / "best.jsonl"
    assert main(["curate", "best-of-k", *args, "--output", str(best), "-k", "2", "--reward", f"{reward}:mentions_paris", "--keep-scores"]) == 0
    for r in read_jsonl(best):
        assert r["meta"]["score"] == max(c["score"] for c in r["meta"]["candidates"])


def test_strict_applies_to_unreadable_rows_not_to_curation_drops(tmp_path, capsys):
    src = write_jsonl(tmp_path / "raw.jsonl", [chat(Q, "Paris."), chat(Q, "  ")])
    out = tmp_path / "clean.jsonl"
    # The blank answer is removed by the filter rule: that is curation working, not bad input.
    assert main(["curate", "filter", "--data", str(src), "--output", str(out), "--strict"]) == 0
    assert report_of(out)["dropped_by_reason"] == {"empty_answer": 1}
    with open(src, "a") as f:
        f.write('{"messages": "not a list"}\n')
    assert main(["curate", "filter", "--data", str(src), "--output", str(out), "--strict"]) == 2
    assert "raw.jsonl:3" in capsys.readouterr().err
