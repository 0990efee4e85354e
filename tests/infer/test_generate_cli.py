"""sftune generate: every input row answered in order, resumable, clear errors; TextStream stop strings."""

from __future__ import annotations

import json

import pytest

from sftune.cli import main
from sftune.data.report import DataError
from sftune.infer.generate import TextStream, generate_file, generate_texts

QUESTIONS = [
    "Hi",
    "Explain, in several long and careful sentences, why the sky looks blue at noon but red at sunset.",
    "2+2?",
    "Name three rivers in Europe and say which countries each one flows through, from source to sea.",
    "Ok",
]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def prompts(tmp_path):
    # Mixed layouts' worth of cases in one messages file: prompt-only rows and rows with an answer
    # (whose prompt is everything before the last assistant turn).
    rows = [{"messages": [{"role": "user", "content": q}]} for q in QUESTIONS]
    rows[2]["messages"].append({"role": "assistant", "content": "an old answer that must not be in the prompt"})
    return _write_jsonl(tmp_path / "prompts.jsonl", rows)


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_rows_in_input_order_with_mixed_lengths(tiny, prompts, tmp_path):
    model, tok = tiny
    out = tmp_path / "answers.jsonl"
    res = generate_file(model, tok, prompts, out, batch_size=2, max_new_tokens=6, progress=False)
    assert res["rows"] == 5 and res["generated"] == 5 and res["skipped_existing"] == 0
    rows = _rows(out)
    assert [r["index"] for r in rows] == list(range(5))
    assert [r["messages"][-1]["content"] for r in rows] == QUESTIONS
    assert rows[2]["messages"] == [{"role": "user", "content": "2+2?"}]  # old answer not part of the prompt
    assert [r["source"] for r in rows] == [f"{prompts}:{i}" for i in range(1, 6)]
    # Each row is what that prompt gets when asked alone (batching/padding changed nothing).
    for r, q in zip(rows, QUESTIONS):
        alone = generate_texts(model, tok, [[{"role": "user", "content": q}]], max_new_tokens=6)[0][0]
        assert (r["answer"], r["prompt_tokens"], r["completion_tokens"], r["finish_reason"]) == (
            alone["text"], alone["prompt_tokens"], alone["completion_tokens"], alone["finish_reason"])
    assert rows[1]["prompt_tokens"] > rows[0]["prompt_tokens"]


def test_resume_after_truncation_gives_identical_output(tiny, prompts, tmp_path, monkeypatch):
    model, tok = tiny
    full = tmp_path / "full.jsonl"
    generate_file(model, tok, prompts, full, batch_size=2, max_new_tokens=6, progress=False)
    reference = full.read_bytes()
    lines = reference.split(b"\n")
    # Interrupted mid-write: two complete rows and half of the third.
    part = tmp_path / "part.jsonl"
    part.write_bytes(lines[0] + b"\n" + lines[1] + b"\n" + lines[2][: len(lines[2]) // 2])

    asked = []
    import sftune.infer.generate as g

    real = g.generate_texts
    monkeypatch.setattr(g, "generate_texts", lambda m, t, convs, **kw: asked.extend(convs) or real(m, t, convs, **kw))
    res = generate_file(model, tok, prompts, part, batch_size=2, max_new_tokens=6, progress=False)
    assert res["skipped_existing"] == 2 and res["generated"] == 3
    assert len(asked) == 3  # the two finished rows were not generated again
    assert part.read_bytes() == reference

    # A finished file resumes to itself with nothing generated.
    asked.clear()
    assert generate_file(model, tok, prompts, part, batch_size=2, max_new_tokens=6, progress=False)["generated"] == 0
    assert asked == [] and part.read_bytes() == reference


def test_output_written_for_other_input_is_refused(tiny, prompts, tmp_path):
    model, tok = tiny
    out = tmp_path / "answers.jsonl"
    other = _write_jsonl(tmp_path / "other.jsonl", [{"messages": [{"role": "user", "content": "Different"}]}])
    generate_file(model, tok, other, out, max_new_tokens=2, progress=False)
    with pytest.raises(DataError, match=r"answers.jsonl:1.*not the answer to input row 0.*\n  fix: pass another --output"):
        generate_file(model, tok, prompts, out, max_new_tokens=2, progress=False)


def test_batch_size_is_checked_by_the_library(tiny, prompts, tmp_path, tiny_model_dir, capsys):
    from sftune.errors import ConfigError

    model, tok = tiny
    out = tmp_path / "answers.jsonl"
    with pytest.raises(ConfigError, match="batch_size must be >= 1, got 0") as e:
        generate_file(model, tok, prompts, out, batch_size=0, max_new_tokens=2, progress=False)
    assert e.value.field == "batch_size" and not out.exists()
    # The CLI says the same (it has no check of its own).
    assert main(["generate", "--model", str(tiny_model_dir), "--input", str(prompts), "--output", str(out),
                 "--batch-size", "0", "--no-progress"]) == 2
    assert "batch_size must be >= 1" in capsys.readouterr().err and not out.exists()


def test_cli_formats_and_sampling(tiny_model_dir, tmp_path, capsys):
    # alpaca csv without outputs, several candidates per prompt
    csv = tmp_path / "p.csv"
    csv.write_text("instruction,input\nSay hi,\nTranslate,bonjour\n", encoding="utf-8")
    out = tmp_path / "a.jsonl"
    rc = main(["generate", "--model", str(tiny_model_dir), "--input", str(csv), "--output", str(out),
               "--max-new-tokens", "4", "--temperature", "1.0", "--num-return-sequences", "2", "--seed", "3", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    rows = _rows(out)
    assert [r["messages"][0]["content"] for r in rows] == ["Say hi", "Translate\n\nbonjour"]
    assert all(len(r["answers"]) == 2 and r["answer"] == r["answers"][0]["text"] for r in rows)
    assert "wrote 2 rows" in capsys.readouterr().out
    # Raw-text prompts are continued, not templated.
    txt = _write_jsonl(tmp_path / "t.jsonl", [{"text": "Once upon a time"}])
    assert main(["generate", "--model", str(tiny_model_dir), "--input", str(txt), "--output", str(tmp_path / "t_out.jsonl"),
                 "--max-new-tokens", "3", "--no-progress"]) == 0
    assert _rows(tmp_path / "t_out.jsonl")[0]["prompt"] == "Once upon a time"


def test_cli_bad_input_gives_a_clear_error(tiny_model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "fine"}]}\n{"messages": [{"role": "user", "content": "x"}\n', encoding="utf-8")
    args = ["generate", "--model", str(tiny_model_dir), "--output", str(tmp_path / "o.jsonl"), "--max-new-tokens", "2", "--no-progress"]
    assert main(args + ["--input", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.jsonl:2" in err
    assert not (tmp_path / "o.jsonl").exists()
    # With --skip-bad-rows the good row is answered and the bad one reported.
    assert main(args + ["--input", str(bad), "--skip-bad-rows"]) == 0
    assert len(_rows(tmp_path / "o.jsonl")) == 1 and "1 bad input rows skipped" in capsys.readouterr().out
    assert main(args + ["--input", str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl" in capsys.readouterr().err
    assert main(args + ["--input", str(bad), "--num-return-sequences", "2"]) == 2
    assert "needs sampling" in capsys.readouterr().err


class _CharTokenizer:
    """Token id = character code: enough to drive TextStream without a model."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


def _feed(stream, text, prompt=(9, 9)):
    import torch

    ids = list(prompt)
    stops = []
    for ch in text:
        ids.append(ord(ch))
        stops.append(bool(stream(torch.tensor([ids]))[0]))
        if stops[-1]:
            break
    return stops


def test_text_stream_holds_back_possible_stop_strings():
    pieces = []
    s = TextStream(_CharTokenizer(), 2, eos_ids=[0], on_text=pieces.append, stop=["world", "##"])
    stops = _feed(s, "Hello wor")
    assert not any(stops) and "".join(pieces) == "Hello "  # "wor" could become "world": held back
    stops = _feed(s, "Hello world and more")
    assert stops[-1] and len(stops) == len("Hello world")  # stopped on the token completing the stop string
    out = s.finish()
    assert out == {"text": "Hello ", "completion_tokens": 11, "finish_reason": "stop"} and "".join(pieces) == "Hello "


def test_text_stream_eos_and_length():
    pieces = []
    s = TextStream(_CharTokenizer(), 2, eos_ids=[0], on_text=pieces.append, stop=["#"])
    _feed(s, "ab\x00")
    assert s.finish() == {"text": "ab", "completion_tokens": 3, "finish_reason": "stop"}
    s = TextStream(_CharTokenizer(), 2, eos_ids=[0], on_text=pieces.append)
    _feed(s, "abc")
    assert s.finish()["finish_reason"] == "length"


def test_tool_prompts_keep_calls_results_and_tools_in_the_output(tiny, tmp_path):
    # The recorded prompt is what the template was given: the call turn, the tool result and the
    # row's tools, not role/content only; and a resumed run recognises those rows as done.
    from sftune.data.templates import BUILTIN_TEMPLATES

    model, tok = tiny
    tok = type(tok).from_pretrained(tok.name_or_path)
    tok.chat_template = BUILTIN_TEMPLATES["qwen3"]
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
    row = {"tools": tools, "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": '{"temperature": 3}'},
    ]}
    inp = _write_jsonl(tmp_path / "tools.jsonl", [row, {"messages": [{"role": "user", "content": "Hi"}]}])
    out = tmp_path / "answers.jsonl"
    generate_file(model, tok, inp, out, batch_size=2, max_new_tokens=3, progress=False)
    rows = _rows(out)
    assert rows[0]["tools"] == tools
    assert rows[0]["messages"][1]["tool_calls"][0]["function"] == call["function"]
    assert rows[0]["messages"][2] == {"role": "tool", "content": '{"temperature": 3}'}
    assert rows[1]["messages"] == [{"role": "user", "content": "Hi"}] and "tools" not in rows[1]
    res = generate_file(model, tok, inp, out, batch_size=2, max_new_tokens=3, progress=False)
    assert res["skipped_existing"] == 2 and _rows(out) == rows
