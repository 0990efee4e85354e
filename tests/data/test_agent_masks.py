"""Exact masks for agent and thinking data, checked against the rule with real templates.

The rule, recomputed here independently of sftune's renderer: turn k's text is
``render(msgs[:k+1])[len(render(msgs[:k], add_generation_prompt=True)):]`` up to its last EOS
(where generation stops); a row trains, of the turns not trained by an earlier row, exactly
those whose prompt + text its text starts with; every assistant turn is trained exactly once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sftune.config import DataSource, SFTConfig
from sftune.data.conversation import Conversation, Message
from sftune.data.readers import read_conversations
from sftune.data.report import DataError, DataReport
from sftune.data.templates import BUILTIN_TEMPLATES, TemplateError, resolve_template
from sftune.data.tokenize import IGNORE_INDEX, Encoder
from sftune.data.toolcalls import normalize_tool_calls, normalize_tools, template_call_form

FIXTURES = Path(__file__).parent / "fixtures"
TEMPLATES = FIXTURES / "templates"


def tool_convs() -> list[Conversation]:
    return read_conversations(DataSource(path=str(FIXTURES / "tool_messages.jsonl")), DataReport())


def decode(tok, ids) -> str:
    return tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def check_rule(tok, template: str, conv: Conversation, rows: list, kwargs: dict | None = None) -> None:
    """Assert ``rows`` (one conversation's) train every assistant turn once, exactly as generated.

    ``rows``: the encoded rows (``input_ids``/``labels``: checked on decoded tokens, for
    templates whose markers are special tokens of the tokenizer), or ``(text, spans, raw)``
    renderings (checked on characters, for templates written for other tokenizers, whose
    markers SmolLM2's BPE merges with their neighbours)."""
    kwargs = kwargs or {}
    msgs = conv.to_messages(template_call_form(tok, template, kwargs))  # the form of calls the template takes

    def render(m, gen=False):
        return tok.apply_chat_template(m, tools=conv.tools, chat_template=template, tokenize=False, add_generation_prompt=gen, **kwargs)

    turns = {}
    for k, m in enumerate(msgs):
        if m["role"] == "assistant":
            prompt, upto = render(msgs[:k], True), render(msgs[: k + 1])
            assert upto.startswith(prompt)
            eos = upto.rfind(tok.eos_token, len(prompt))  # generation stops at the turn's EOS
            text = upto if eos == -1 else upto[: eos + len(tok.eos_token)]
            turns[k] = (text, text[len(prompt):].rstrip())
    pending = sorted(turns)
    for row in rows:
        if isinstance(row, dict):
            text = decode(tok, row["input_ids"])
            trained = decode(tok, [t for t, l in zip(row["input_ids"], row["labels"]) if l != IGNORE_INDEX])
            assert row["source"] == (str(conv.source) if conv.source else "")
        else:
            text, spans, _ = row
            trained = "".join(text[a:b] for a, b in spans)
        exact = [k for k in pending if text.startswith(turns[k][0])]
        assert exact, f"a row that trains nothing new: {text!r}"
        assert trained == "".join(turns[k][1] for k in exact)
        pending = [k for k in pending if k not in exact]
    assert not pending, f"turns never trained: {pending}"


def char_rows(tok, template, conv, **kw) -> list:
    from sftune.data.render import apply_reasoning

    return Encoder(tok, template, "assistant", **kw).renderings(conv)


def encode_each(tok, template, convs, **kw) -> tuple[list[list[dict]], DataReport]:
    report = DataReport()
    enc = Encoder(tok, template, "assistant", max_length=4096, **kw)
    return [enc.encode_many([c], report) for c in convs], report


@pytest.mark.parametrize(
    "template_name, reasoning, n_rows",
    [
        ("qwen3", "keep", [1, 1, 1, 1]),  # built-ins are prefix-stable: one row per conversation
        ("hermes", "keep", [1, 1, 1, 1]),
        (str(TEMPLATES / "qwen3.jinja"), "keep", [2, 2, 1, 2]),  # Qwen3's own template rewrites history
        (str(TEMPLATES / "vllm_tool_chat_template_hermes.jinja"), "drop", [1, 1, 1, 1]),
        # InternLM2 writes arguments with Jinja's |string: given as JSON text (a dict would print as a Python repr)
        (str(TEMPLATES / "vllm_tool_chat_template_internlm2_tool.jinja"), "drop", [1, 1, 1, 1]),
        # Qwen3 parses <think> out of the content again and drops it from old turns: split as with keep
        (str(TEMPLATES / "qwen3.jinja"), "inline", [2, 2, 1, 2]),
    ],
)
def test_masks_follow_the_rule(smol_tokenizer, template_name, reasoning, n_rows):
    tok = smol_tokenizer
    template = resolve_template(template_name, tok)
    convs = tool_convs()
    per_conv, report = encode_each(tok, template, convs, reasoning=reasoning)
    assert [len(rows) for rows in per_conv] == n_rows
    split = [n for n in n_rows if n > 1]
    assert report.counts.get("conversations_split", 0) == len(split)
    assert report.counts.get("rows_from_split_conversations", 0) == sum(split)
    from sftune.data.render import apply_reasoning

    for conv, rows in zip(convs, per_conv):
        check_rule(tok, template, apply_reasoning(conv, reasoning), rows)


def test_llama31_json_template_single_calls_and_raise_exception(smol_tokenizer):
    # vLLM's Llama 3.1 JSON template takes one call per turn: a parallel-call row is dropped with
    # the template's own message and its line; the rest follow the rule.
    tok = smol_tokenizer
    template = resolve_template(str(TEMPLATES / "vllm_tool_chat_template_llama3.1_json.jinja"), tok)
    convs = tool_convs()
    per_conv, report = encode_each(tok, template, convs, reasoning="drop")
    assert [len(r) for r in per_conv] == [1, 0, 1, 1]
    assert report.dropped["chat template failed"] == 1
    assert report.examples["chat template failed"][0].endswith(
        "tool_messages.jsonl:2 (template line 96: This model only supports single tool-calls at once!)")  # the template's own line
    from sftune.data.render import apply_reasoning

    for conv, rows in zip(convs, per_conv):
        if rows:  # <|eot_id|> is no special token of SmolLM2's tokenizer: checked on characters
            check_rule(tok, template, apply_reasoning(conv, "drop"), char_rows(tok, template, conv, reasoning="drop"))


def test_mistral_template_moves_tools_to_the_last_user_turn(smol_tokenizer):
    # vLLM's Mistral template writes [AVAILABLE_TOOLS] before the *last* user message, so a
    # second user turn rewrites the first turn's prompt: the conversation splits in two rows.
    tok = smol_tokenizer
    template = resolve_template(str(TEMPLATES / "vllm_tool_chat_template_mistral.jinja"), tok)
    tools = normalize_tools([{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}])
    call = normalize_tool_calls([{"id": "call00009a", "name": "get_weather", "arguments": '{"city": "Oslo"}'}])
    conv = Conversation.chat([
        Message("user", "Weather in Oslo?"),
        Message("assistant", "", tool_calls=call, content_null=True),
        Message("tool", '{"temp_c": 3}', tool_call_id="call00009a", name="get_weather"),
        Message("assistant", "3 °C."),
        Message("user", "Thanks!"),
        Message("assistant", "You are welcome."),
    ], tools=tools)
    [rows], report = encode_each(tok, template, [conv])
    assert len(rows) == 2 and report.counts["conversations_split"] == 1
    chars = char_rows(tok, template, conv)  # [TOOL_CALLS] is no special token here: checked on characters
    check_rule(tok, template, conv, chars)
    text, spans, _ = chars[1]
    assert text[spans[0][0]:].startswith("[TOOL_CALLS] [{")


def test_qwen3_two_user_turns_with_thinking_split_in_two(smol_tokenizer):
    tok = smol_tokenizer
    template = (TEMPLATES / "qwen3.jinja").read_text()
    conv = Conversation.chat([
        Message("user", "2+2?"), Message("assistant", "4", reasoning="Two and two."),
        Message("user", "3+3?"), Message("assistant", "6", reasoning="Three and three."),
    ])
    [rows], report = encode_each(tok, template, [conv])
    assert len(rows) == 2 and dict(report.counts) == {"conversations_split": 1, "rows_from_split_conversations": 2}
    check_rule(tok, template, conv, rows)
    trained = [decode(tok, [t for t, l in zip(r["input_ids"], r["labels"]) if l != IGNORE_INDEX]) for r in rows]
    assert trained == ["<think>\nThree and three.\n</think>\n\n6<|im_end|>", "<think>\nTwo and two.\n</think>\n\n4<|im_end|>"]
    # the same conversation under the prefix-stable built-in: one row
    [rows], _ = encode_each(tok, BUILTIN_TEMPLATES["qwen3"], [conv])
    assert len(rows) == 1


def test_template_kwargs_reach_the_template(smol_tokenizer):
    tok = smol_tokenizer
    conv = Conversation.chat([Message("user", "2+2?"), Message("assistant", "4")])
    for template in (BUILTIN_TEMPLATES["qwen3"], (TEMPLATES / "qwen3.jinja").read_text()):
        [rows], _ = encode_each(tok, template, [conv], template_kwargs={"enable_thinking": False})
        check_rule(tok, template, conv, rows, {"enable_thinking": False})
        text = decode(tok, rows[0]["input_ids"])
        trained = decode(tok, [t for t, l in zip(rows[0]["input_ids"], rows[0]["labels"]) if l != IGNORE_INDEX])
        # the empty think block is part of the prompt the model is given, not of what it learns
        assert text.endswith("<think>\n\n</think>\n\n4<|im_end|>\n") and trained == "4<|im_end|>"
    # a turn with reasoning cannot follow a prompt that closed the think block: refused, with the fix
    with pytest.raises(TemplateError, match="enable_thinking=false.*--reasoning drop"):
        encode_each(tok, BUILTIN_TEMPLATES["qwen3"], [tool_convs()[2]], template_kwargs={"enable_thinking": False})


def test_smollm2_template_is_refused_by_name_with_the_fix(smol_tokenizer):
    tok = smol_tokenizer
    own = resolve_template(None, tok)
    convs = tool_convs()
    with pytest.raises(TemplateError, match=r"does not show the tool schemas.*--template qwen3 or --template hermes"):
        encode_each(tok, own, [convs[1]], reasoning="drop")
    # tool calls vanish (no tools given, so only the calls can tell)
    conv = Conversation.chat([
        Message("user", "Weather?"),
        Message("assistant", "Checking.", tool_calls=normalize_tool_calls([{"name": "get_weather", "arguments": {}}])),
        Message("tool", "3", name="get_weather"), Message("assistant", "3 °C."),
    ])
    with pytest.raises(TemplateError, match=r"message 1: the chat template does not show the assistant's tool calls"):
        encode_each(tok, own, [conv])
    with pytest.raises(TemplateError, match=r"does not show the assistant's reasoning.*--reasoning inline"):
        encode_each(tok, own, [convs[2]])
    # the fix works: inline reasoning trains it as text in the content
    [rows], _ = encode_each(tok, own, [convs[2]], reasoning="inline")
    trained = decode(tok, [t for t, l in zip(rows[0]["input_ids"], rows[0]["labels"]) if l != IGNORE_INDEX])
    assert trained == "<think>\nAdd two and two.\n</think>\n\n4<|im_end|>"


@pytest.mark.parametrize(
    "reasoning, want",
    [
        ("keep", "<think>\nAdd two and two.\n</think>\n\n4<|im_end|>"),
        ("mask", "\n</think>\n\n4<|im_end|>"),  # Qwen3 writes an empty think block without reasoning: only the reasoning differs
        ("inline", "<think>\nAdd two and two.\n</think>\n\n4<|im_end|>"),
        ("drop", "<think>\n\n</think>\n\n4<|im_end|>"),
    ],
)
def test_reasoning_policies(smol_tokenizer, reasoning, want):
    tok = smol_tokenizer
    conv = tool_convs()[2]
    [rows], _ = encode_each(tok, (TEMPLATES / "qwen3.jinja").read_text(), [conv], reasoning=reasoning)
    row = rows[0]
    text = decode(tok, row["input_ids"])
    trained = decode(tok, [t for t, l in zip(row["input_ids"], row["labels"]) if l != IGNORE_INDEX])
    assert ("Add two and two." in text) == (reasoning != "drop")
    if reasoning == "mask":  # "<think>\n" is trained too (it is there with or without reasoning), the reasoning is not
        assert trained == "<think>\n" + want and "Add two" not in trained
    else:
        assert trained == want


def test_reasoning_mask_under_the_builtin(smol_tokenizer):
    tok = smol_tokenizer
    [rows], _ = encode_each(tok, BUILTIN_TEMPLATES["hermes"], [tool_convs()[2]], reasoning="mask")
    row = rows[0]
    assert decode(tok, [t for t, l in zip(row["input_ids"], row["labels"]) if l != IGNORE_INDEX]) == "4<|im_end|>"
    assert "Add two and two." in decode(tok, row["input_ids"])


def test_template_raise_exception_drops_the_row_with_message_and_line(smol_tokenizer, tmp_path):
    tok = smol_tokenizer
    template = BUILTIN_TEMPLATES["chatml"].replace(
        "{% for message in messages %}",
        "{% for message in messages %}{% if message['content'] == 'forbidden' %}{{ raise_exception('no forbidden words') }}{% endif %}",
    )
    p = tmp_path / "d.jsonl"
    rows = [{"messages": [{"role": "user", "content": c}, {"role": "assistant", "content": "ok"}]} for c in ("fine", "forbidden", "also fine")]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    from sftune.data.prepare import prepare

    cfg = SFTConfig(data=[str(p)], template=template, cache_dir=str(tmp_path / "cache"))
    prep = prepare(cfg, tok, use_cache=False, progress=False)
    assert len(prep.dataset) == 2 and prep.dataset["source"] == [f"{p}:1", f"{p}:3"]
    assert prep.report.examples["chat template failed"] == [f"{p}:2 (template line 1: no forbidden words)"]
    cfg = SFTConfig(data=[str(p)], template=template, strict=True, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match="d.jsonl:2: template line 1: no forbidden words"):
        prepare(cfg, tok, use_cache=False, progress=False)


def test_prepare_with_tools_reports_splits_and_keeps_sources(smol_tokenizer, tmp_path):
    tok = smol_tokenizer
    cfg = SFTConfig(data=[str(FIXTURES / "tool_messages.jsonl")], template=str(TEMPLATES / "qwen3.jinja"), cache_dir=str(tmp_path / "c"))
    prep = prepare_cached_twice(cfg, tok)
    assert len(prep.dataset) == 7 and prep.report.kept == 7
    assert dict(prep.report.counts) == {"conversations_split": 3, "rows_from_split_conversations": 6}
    assert any("3 conversations were split into 6 rows" in n for n in prep.report.notes)
    assert [s.rsplit(":", 1)[-1] for s in prep.dataset["source"]] == ["1", "1", "2", "2", "3", "7", "7"]
    # template_kwargs and reasoning are part of the cache key
    other = prepare_cached_twice(cfg.model_copy(update={"reasoning": "drop"}), tok)
    assert len(other.dataset) == 9


def prepare_cached_twice(cfg, tok):
    from sftune.data.prepare import prepare

    first = prepare(cfg, tok, progress=False)
    second = prepare(cfg, tok, progress=False)
    assert second.cached and second.report.to_dict() == first.report.to_dict()
    return second


def test_cli_prepare_and_inspect_agent_data(smol_tokenizer_dir, tmp_path, capsys):
    # Through the existing CLI: reasoning and template_kwargs come from the YAML config.
    import datasets

    from sftune.cli import main
    from sftune.data import inspect as inspect_module

    cfg = tmp_path / "c.yaml"
    cfg.write_text("reasoning: mask\ntemplate: qwen3\n")
    data, out = FIXTURES / "tool_messages.jsonl", tmp_path / "out"
    args = ["--model", str(smol_tokenizer_dir), "--data", str(data), "--cache-dir", str(tmp_path / "cache"), "--config", str(cfg)]
    assert main(["prepare", *args, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "dropped      1 × tool call arguments are not valid JSON" in printed
    assert "warning      1 × tool call names a tool absent from 'tools'" in printed
    report = json.loads((out / "data_report.json").read_text())
    assert report["kept"] == 4 and report["warnings_by_reason"] == {"tool call names a tool absent from 'tools'": 1}
    assert len(datasets.load_from_disk(str(out))) == 4
    png = tmp_path / "mask.png"
    assert main(["inspect", *args, "--index", "1", "--png", str(png)]) == 0
    shown = capsys.readouterr().out
    assert "<tool_call>" in shown and "<think>" in shown and "warning: 1 ×" in shown
    assert png.stat().st_size > 10_000
    # colours: a trained tool call, an untrained tool result and reasoning in their own colours
    pieces = ["<|im_start|>assistant\n", "<think>", "x", "</think>", "<tool_call>", "{}", "</tool_call>", "<tool_response>", "3", "</tool_response>"]
    kinds = inspect_module.token_kinds(pieces)
    assert kinds == [None, "reasoning", "reasoning", "reasoning", "tool call", "tool call", "tool call", "tool result", "tool result", "tool result"]
    coloured = inspect_module.highlight(pieces, [False, False, False, True, True, True, True, False, False, False], True, kinds)
    for kind in ("tool call", "tool result", "reasoning"):
        assert inspect_module.KIND_COLORS[kind][0] in coloured


def test_inline_reasoning_stripped_by_the_template_is_refused(smol_tokenizer):
    # DeepSeek-R1-style templates cut "<think>...</think>" out of assistant content.
    strip_think = (
        "{% for m in messages %}{% if m['role'] == 'assistant' %}"
        "{{ '<|im_start|>assistant\\n' + m['content'].split('</think>')[-1] + '<|im_end|>\\n' }}"
        "{% else %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    with pytest.raises(TemplateError, match=r"does not show the reasoning written into the content.*--reasoning drop"):
        encode_each(smol_tokenizer, strip_think, [tool_convs()[2]], reasoning="inline")
    [rows], _ = encode_each(smol_tokenizer, strip_think, [tool_convs()[2]], reasoning="drop")
    assert len(rows) == 1


def test_shape_shortcut_leaves_agent_conversations_to_the_direct_path(smol_tokenizer):
    # ChatML is proved content-opaque, but it only knows roles and text: conversations with any
    # other key go the direct way (and equal what fast=False gives), plain ones still use shapes.
    tok = smol_tokenizer
    template = BUILTIN_TEMPLATES["chatml"]
    plain = Conversation.chat([Message("user", "Hi"), Message("assistant", "Hello")])
    extra = Conversation.chat([Message("user", "Hi", extra={"lang": "en"}), Message("assistant", "Hello")])
    named = Conversation.chat([Message("user", "Hi", name="ann"), Message("assistant", "Hello")])
    fast = Encoder(tok, template, "assistant")
    calls = []
    original = fast.shapes.text_and_spans
    fast.shapes.text_and_spans = lambda msgs, *a, **k: calls.append(len(msgs)) or original(msgs, *a, **k)
    got = fast.encode_many([plain, extra, named, plain], DataReport())
    want = Encoder(tok, template, "assistant", fast=False).encode_many([plain, extra, named, plain], DataReport())
    assert [(r["input_ids"], r["labels"]) for r in got] == [(r["input_ids"], r["labels"]) for r in want]
    assert calls == [2, 2]  # only the two plain conversations


def test_text_a_template_writes_after_eos_is_not_trained(smol_tokenizer):
    # ToolACE-style: the generation prompt is written whether asked for or not, so every
    # rendering ends with "<|im_start|>assistant\n". The model stops at <|im_end|>: the turn's
    # text ends there, and both turns stay exact in one row.
    tok = smol_tokenizer
    always = BUILTIN_TEMPLATES["chatml"].replace("{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}", "{{ '<|im_start|>assistant\\n' }}")
    assert always != BUILTIN_TEMPLATES["chatml"]
    conv = Conversation.chat([Message("user", "a"), Message("assistant", "b"), Message("user", "c"), Message("assistant", "d")])
    [rows], report = encode_each(tok, always, [conv])
    assert len(rows) == 1 and not report.counts
    assert decode(tok, [t for t, l in zip(rows[0]["input_ids"], rows[0]["labels"]) if l != IGNORE_INDEX]) == "b<|im_end|>d<|im_end|>"


ARGS_AS_THEY_ARE = (  # writes function.arguments out as it is, as vLLM's Apertus template does (a dict raises)
    "{% if tools %}<tools>{{ tools | tojson }}</tools>{% endif %}{% for m in messages %}<|{{ m.role }}|>{{ m.content or '' }}"
    "{% for c in m.tool_calls or [] %}<call>{{ '{\"' + c.function.name + '\": ' + c.function.arguments + '}' }}</call>{% endfor %}"
    "<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.mark.parametrize("template_name, form", [
    (str(TEMPLATES / "vllm_tool_chat_template_internlm2_tool.jinja"), "string"),  # prints a dict as Python's repr
    ("inline:" + ARGS_AS_THEY_ARE, "string"),  # raises on a dict
    (str(TEMPLATES / "vllm_tool_chat_template_hermes.jinja"), "object"),  # |tojson: a string would be encoded twice
    ("hermes", "object"),
])
def test_tool_call_arguments_reach_the_template_as_json_it_can_write(smol_tokenizer, template_name, form):
    tok = smol_tokenizer
    template = ARGS_AS_THEY_ARE if template_name.startswith("inline:") else resolve_template(template_name, tok)
    assert template_call_form(tok, template).arguments == form
    conv = tool_convs()[0]  # get_weather(city="Oslo"), arguments stored as a JSON string
    # Checked on characters: this tokenizer's BPE merges other templates' markers with their neighbours
    (row,) = char_rows(tok, template, conv)
    text, spans, _ = row
    trained = "".join(text[a:b] for a, b in spans)
    # The call is trained as JSON: neither {'city': 'Oslo'} (a repr) nor "{\"city\"..." (JSON in a string)
    assert '"city": "Oslo"' in trained and "'city'" not in trained and '\\"city' not in trained, trained
    check_rule(tok, template, conv, [row])


def test_a_template_failing_on_null_content_gets_an_empty_string(smol_tokenizer):
    """vLLM's DeepSeek templates test ``content is none`` and else add the content to a string;
    transformers leaves the ``None`` key out, so a call-only turn would fail: it gets ``""``."""
    tok = smol_tokenizer
    template = (
        "{% if tools %}<tools>{{ tools | tojson }}</tools>{% endif %}{% for m in messages %}<|{{ m.role }}|>"
        "{% if m.tool_calls %}{% if m['content'] is none %}<calls>{% else %}{{ m['content'] + '<calls>' }}{% endif %}"
        "{{ m.tool_calls[0].function.name }}{{ m.tool_calls[0].function.arguments | tojson }}</calls>{% else %}{{ m.content }}{% endif %}<|end|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    form = template_call_form(tok, template)
    assert (form.arguments, form.null_content) == ("object", "")
    conv = tool_convs()[0]
    assert conv.messages[2].content_null and conv.messages[2].tool_calls  # the call-only turn of the data
    (row,) = char_rows(tok, template, conv)
    text, spans, _ = row
    assert '<calls>get_weather{"city": "Oslo"}</calls>' in "".join(text[a:b] for a, b in spans)
    check_rule(tok, template, conv, [row])
    # A template that handles a missing content keeps the key left out, as transformers does
    assert template_call_form(tok, BUILTIN_TEMPLATES["hermes"]).null_content is None


def test_a_template_that_writes_only_a_call_marker_does_not_show_the_calls(smol_tokenizer):
    """vLLM's short Mistral template writes '[TOOL_CALLS]' + the content: the calls themselves are lost."""
    tok = smol_tokenizer
    template = (
        "{% if tools %}<tools>{{ tools | tojson }}</tools>{% endif %}{% for m in messages %}<|{{ m.role }}|>"
        "{% if m.tool_calls %}[TOOL_CALLS]{{ m.content or '' }}{% else %}{{ m.content }}{% endif %}<|end|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    with pytest.raises(TemplateError, match=r"message 2: the chat template does not show the assistant's tool calls "
                                            r"\('tool_calls'\): its rendering of the turn never names the function called \('get_weather'\)"):
        char_rows(tok, template, tool_convs()[0])
