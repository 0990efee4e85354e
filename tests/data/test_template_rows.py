"""A row the chat template cannot show is a bad row: dropped with file:line, reason and fix, the run
goes on; a template that can show a feature for no row at all stops the run with the fix."""

from __future__ import annotations

import json

import pytest

from sftune.cli import main
from sftune.config import SFTConfig
from sftune.data.prepare import prepare
from sftune.data.render import CALLS_HIDDEN, NOT_PREFIX_STABLE
from sftune.data.report import DataReport
from sftune.data.templates import BUILTIN_TEMPLATES, TemplateError
from sftune.data.tokenize import IGNORE_INDEX, Encoder

# ChatML whose generation prompt differs for one question only: for that row the conversation
# rendered with its answer does not start with the prompt the model would be given.
ODD_PROMPT = BUILTIN_TEMPLATES["chatml"].replace(
    "{{ '<|im_start|>assistant\\n' }}",
    "{% if messages[-1]['content'] == 'odd one' %}{{ '<|im_start|>assistant (odd)\\n' }}"
    "{% else %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
)
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def chat_row(q: str, a: str, **assistant) -> dict:
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a, **assistant}]}


def tool_row() -> dict:
    return {"tools": [TOOL], "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call00001a", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "tool_call_id": "call00001a", "name": "get_weather", "content": "3"},
        {"role": "assistant", "content": "3 °C."},
    ]}


def write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def trained(tok, row) -> str:
    return tok.decode([t for t, l in zip(row["input_ids"], row["labels"]) if l != IGNORE_INDEX])


def test_one_row_not_prefix_stable_is_dropped_with_line_and_fix(smol_tokenizer, tmp_path):
    tok = smol_tokenizer
    assert ODD_PROMPT != BUILTIN_TEMPLATES["chatml"]  # the replacement found ChatML's generation prompt
    p = write(tmp_path / "d.jsonl", [chat_row("fine", "ok"), chat_row("odd one", "hm"), chat_row("also fine", "yes")])
    cfg = SFTConfig(data=[str(p)], template=ODD_PROMPT, cache_dir=str(tmp_path / "cache"))
    prep = prepare(cfg, tok, use_cache=False, progress=False)
    assert prep.dataset["source"] == [f"{p}:1", f"{p}:3"]
    assert [trained(tok, r) for r in prep.dataset] == ["ok<|im_end|>", "yes<|im_end|>"]
    assert (prep.report.kept, prep.report.n_dropped) == (2, 1)
    assert dict(prep.report.dropped) == {NOT_PREFIX_STABLE: 1}
    [example] = prep.report.examples[NOT_PREFIX_STABLE]
    assert example.startswith(f"{p}:2 (message 1: the chat template is not prefix-stable")
    assert "Use a template whose answers continue their generation prompt" in example  # the fix
    # --strict stops at that row, naming it
    cfg = SFTConfig(data=[str(p)], template=ODD_PROMPT, strict=True, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(TemplateError, match=r"d\.jsonl:2: message 1: the chat template is not prefix-stable"):
        prepare(cfg, tok, use_cache=False, progress=False)


def test_qwen3_without_thinking_drops_only_the_reasoning_row(smol_tokenizer, tmp_path):
    # enable_thinking=false puts an empty think block into every generation prompt: a turn with
    # reasoning cannot follow it, the other rows train as usual.
    tok = smol_tokenizer
    rows = [chat_row("2+2?", "4"), chat_row("3+3?", "6", reasoning_content="Three and three."), chat_row("1+1?", "2")]
    p = write(tmp_path / "r.jsonl", rows)
    cfg = SFTConfig(data=[str(p)], template="qwen3", template_kwargs={"enable_thinking": False}, cache_dir=str(tmp_path / "c"))
    prep = prepare(cfg, tok, use_cache=False, progress=False)
    assert prep.dataset["source"] == [f"{p}:1", f"{p}:3"]
    assert [trained(tok, r) for r in prep.dataset] == ["4<|im_end|>", "2<|im_end|>"]
    [example] = prep.report.examples[NOT_PREFIX_STABLE]
    assert example.startswith(f"{p}:2 (") and "use --reasoning drop or inline" in example
    # every row with reasoning: nothing disproves the failure, so the run stops with the fix
    p2 = write(tmp_path / "all.jsonl", [rows[1], chat_row("5+5?", "10", reasoning_content="Five and five.")])
    cfg = SFTConfig(data=[str(p2)], template="qwen3", template_kwargs={"enable_thinking": False}, cache_dir=str(tmp_path / "c"))
    with pytest.raises(TemplateError, match=r"all\.jsonl:1: message 1: .*enable_thinking=false.*--reasoning drop.*all 2 conversations"):
        prepare(cfg, tok, use_cache=False, progress=False)


def test_a_template_failing_every_row_stops(smol_tokenizer, tmp_path):
    tok = smol_tokenizer
    # rewrites every earlier turn once a later one exists: no row can be located
    bad = "{% for m in messages %}{{ m['role'] }}{{ messages|length }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
    p = write(tmp_path / "d.jsonl", [chat_row("a", "b"), chat_row("c", "d")])
    cfg = SFTConfig(data=[str(p)], template=bad, cache_dir=str(tmp_path / "c"))
    with pytest.raises(TemplateError, match=r"d\.jsonl:1: message 1: the chat template is not prefix-stable"):
        prepare(cfg, tok, use_cache=False, progress=False)


def test_smollm2_template_still_refuses_tool_data_beside_plain_rows(smol_tokenizer, tmp_path):
    # Plain rows render fine, but the template shows the tools of no row: stopping (with the fix)
    # beats quietly training a tool-less model on agent data.
    tok = smol_tokenizer
    row = tool_row()
    row["messages"][1]["content"] = ""  # SmolLM2's template needs a content string
    p = write(tmp_path / "t.jsonl", [chat_row("Hi", "Hello."), row, row])
    cfg = SFTConfig(data=[str(p)], cache_dir=str(tmp_path / "c"))
    with pytest.raises(TemplateError, match=r"t\.jsonl:2: the chat template does not show the tool schemas.*--template qwen3 or --template hermes"):
        prepare(cfg, tok, use_cache=False, progress=False)


def test_per_row_hidden_tool_calls_are_dropped_once_the_template_has_shown_them(smol_tokenizer, tmp_path):
    # A template that writes an assistant turn's calls only when the turn has no text: the row with
    # text and calls would lose its calls and is dropped; the call-only row (after it in the file)
    # trains them, which shows the template can show calls, so the run goes on.
    tok = smol_tokenizer
    template = BUILTIN_TEMPLATES["hermes"].replace("message.tool_calls or []", "(message.tool_calls if not message.content else []) or []")
    assert template != BUILTIN_TEMPLATES["hermes"]
    with_text = tool_row()
    with_text["messages"][1]["content"] = "Let me look."
    p = write(tmp_path / "t.jsonl", [with_text, tool_row()])
    prep = prepare(SFTConfig(data=[str(p)], template=template, cache_dir=str(tmp_path / "c")), tok, use_cache=False, progress=False)
    assert prep.dataset["source"] == [f"{p}:2"]
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>' in trained(tok, prep.dataset[0])
    [example] = prep.report.examples[CALLS_HIDDEN]
    assert example.startswith(f"{p}:1 (message 1: the chat template does not show the assistant's tool calls")
    assert "--template qwen3 or --template hermes" in example
    # the same row alone: no row shows calls, so it stops
    with pytest.raises(TemplateError, match=r"t1\.jsonl:1: message 1: the chat template does not show the assistant's tool calls"):
        prepare(SFTConfig(data=[str(write(tmp_path / "t1.jsonl", [with_text]))], template=template, cache_dir=str(tmp_path / "c")),
                tok, use_cache=False, progress=False)


def test_encode_many_keeps_going_and_encode_stays_strict(smol_tokenizer):
    from sftune.data.conversation import Conversation, Message, Source

    tok = smol_tokenizer
    convs = [Conversation.chat([Message("user", q), Message("assistant", "x")], source=Source("f.jsonl", line=i + 1))
             for i, q in enumerate(["a", "odd one", "b"])]
    enc = Encoder(tok, ODD_PROMPT, "assistant")
    report = DataReport()
    rows = enc.encode_many(convs, report)
    assert [r["source"] for r in rows] == ["f.jsonl:1", "f.jsonl:3"] and report.dropped[NOT_PREFIX_STABLE] == 1
    # once shown, a later chunk of only failing rows drops them too (the template is per row at fault)
    assert enc.encode_many([convs[1]], report) == [] and report.dropped[NOT_PREFIX_STABLE] == 2
    with pytest.raises(TemplateError, match=r"f\.jsonl:2: message 1: the chat template is not prefix-stable"):
        enc.encode(convs[1])


def test_a_template_raising_on_every_row_stops_one_raising_on_some_drops(smol_tokenizer, tmp_path):
    tok = smol_tokenizer
    template = BUILTIN_TEMPLATES["chatml"].replace(
        "{% for message in messages %}",
        "{% for message in messages %}{% if message['content'] == 'forbidden' %}{{ raise_exception('no forbidden words') }}{% endif %}",
    )
    p = write(tmp_path / "d.jsonl", [chat_row("forbidden", "ok"), chat_row("forbidden", "no")])
    with pytest.raises(TemplateError, match=r"d\.jsonl:1: the chat template raised: template line 1: no forbidden words \(It fails this way on all 2") as e:
        prepare(SFTConfig(data=[str(p)], template=template, cache_dir=str(tmp_path / "c")), tok, use_cache=False, progress=False)
    assert "Fix: give the rows what the template reads" in str(e.value)  # a stop says what to do
    p = write(tmp_path / "e.jsonl", [chat_row("forbidden", "ok"), chat_row("fine", "yes")])
    prep = prepare(SFTConfig(data=[str(p)], template=template, cache_dir=str(tmp_path / "c")), tok, use_cache=False, progress=False)
    assert prep.dataset["source"] == [f"{p}:2"] and prep.report.examples["chat template failed"] == [f"{p}:1 (template line 1: no forbidden words)"]


def test_cli_prepare_reports_the_dropped_row_and_strict_stops(smol_tokenizer_dir, tmp_path, capsys):
    tpl = tmp_path / "odd.jinja"
    tpl.write_text(ODD_PROMPT, encoding="utf-8")
    p = write(tmp_path / "d.jsonl", [chat_row("fine", "ok"), chat_row("odd one", "hm")])
    args = ["prepare", "--model", str(smol_tokenizer_dir), "--data", str(p), "--template", str(tpl), "--cache-dir", str(tmp_path / "c")]
    assert main([*args, "--output", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert f"dropped      1 × {NOT_PREFIX_STABLE}" in printed and f"{p}:2 (message 1:" in printed
    report = json.loads((tmp_path / "out" / "data_report.json").read_text())
    assert report["kept"] == 1 and report["dropped_by_reason"] == {NOT_PREFIX_STABLE: 1}
    assert main([*args, "--output", str(tmp_path / "out2"), "--strict"]) == 2
    assert f"{p}:2: message 1: the chat template is not prefix-stable" in capsys.readouterr().err
