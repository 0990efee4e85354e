"""The request side of tool calling: OpenAI messages into template messages, tool_choice, forced prefixes."""

from __future__ import annotations

import json

import pytest

from sftune.infer.toolformat import BUILTIN_FORMATS, ToolFormat
from sftune.infer.toolrequest import (
    ToolRequestError,
    forced_prefix,
    prepare_tool_request,
    template_messages,
    tool_choice_mode,
)

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
         {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}]

ROUND_TRIP = [
    {"role": "developer", "content": "Be brief."},
    {"role": "user", "content": [{"type": "text", "text": "Weather in "}, {"type": "text", "text": "Oslo?"}]},
    {"role": "assistant", "content": None, "reasoning": "Needs the tool.", "tool_calls": [
        {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
    {"role": "tool", "tool_call_id": "call_a", "content": '{"temperature": 3}'},
    {"role": "assistant", "content": "3 °C in Oslo."},
]

# A minimal tool-aware template: tools in the system turn, calls written with tojson (as Hermes/Qwen do).
TEMPLATE = (
    "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }};{% endfor %}</tools>\n{% endif %}"
    "{% for m in messages %}<{{ m.role }}>"
    "{% if m.reasoning_content is defined %}<think>{{ m.reasoning_content }}</think>{% endif %}"
    "{{ m.content }}"
    "{% for tc in m.tool_calls or [] %}<tool_call>{{ {'name': tc.function.name, 'arguments': tc.function.arguments} | tojson }}</tool_call>{% endfor %}"
    "</{{ m.role }}>\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
)


def test_template_messages_parse_arguments_and_keep_keys_faithfully():
    msgs = template_messages(ROUND_TRIP)
    assert msgs[0] == {"role": "system", "content": "Be brief."}
    assert msgs[1] == {"role": "user", "content": "Weather in Oslo?"}
    assert msgs[2] == {"role": "assistant", "content": None, "reasoning_content": "Needs the tool.", "tool_calls": [
        {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]}
    assert msgs[3] == {"role": "tool", "content": '{"temperature": 3}', "tool_call_id": "call_a"}
    assert msgs[4] == {"role": "assistant", "content": "3 °C in Oslo."}  # no keys the request lacks
    assert ROUND_TRIP[2]["tool_calls"][0]["function"]["arguments"] == '{"city": "Oslo"}'  # input untouched


def test_a_request_reaches_the_template_as_the_same_row_does_in_training(tmp_path):
    """Serving and training hand a chat template the same dicts for the same conversation."""
    from sftune.data.readers import read_conversations
    from sftune.data.report import DataReport

    row = [{**m, "content": "".join(p["text"] for p in m["content"]) if isinstance(m["content"], list) else m["content"]}
           for m in ROUND_TRIP]
    row[0]["role"] = "system"
    row[2]["reasoning_content"] = row[2].pop("reasoning")
    f = tmp_path / "agent.jsonl"
    f.write_text(json.dumps({"messages": row, "tools": TOOLS}) + "\n", encoding="utf-8")
    conv = read_conversations(str(f), DataReport())[0]
    assert conv.to_messages() == template_messages(ROUND_TRIP)


def test_rendered_call_is_a_json_object_not_an_escaped_string(smol_tokenizer):
    req = prepare_tool_request(ROUND_TRIP, TOOLS, "auto", BUILTIN_FORMATS["hermes"])
    text = smol_tokenizer.apply_chat_template(req.messages, tools=req.tools, chat_template=TEMPLATE, tokenize=False,
                                              add_generation_prompt=False)
    assert '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>' in text
    assert "<tools>get_weather;get_time;</tools>" in text and "<think>Needs the tool.</think>" in text
    none = prepare_tool_request(ROUND_TRIP, TOOLS, "none", BUILTIN_FORMATS["hermes"])
    assert none.tools is None and none.prefix == "" and not none.parse_format.has_calls
    assert "<tools>" not in smol_tokenizer.apply_chat_template(none.messages, tools=none.tools, chat_template=TEMPLATE, tokenize=False)


@pytest.mark.parametrize("messages, param, match", [
    ([{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "c", "content": "1"}], "messages.1", "no assistant tool_calls before it"),
    ([{"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "c9", "content": "1"}], "messages.1.tool_call_id", "'c9' answers no call"),
    ([{"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{city: Oslo}"}}]}],
     "messages.0.tool_calls.0.function.arguments", "not valid JSON"),
    ([{"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "[1]"}}]}],
     "messages.0.tool_calls.0.function.arguments", "must encode a JSON object"),
    ([{"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {"arguments": "{}"}}]}],
     "messages.0.tool_calls.0", "must be"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "messages.0.content", "text parts"),
    ([{"role": "user"}], "messages.0.content", "only an assistant message that makes tool_calls"),
    ([{"role": "assistant", "content": None}], "messages.0.content", "null content"),
])
def test_bad_request_messages_name_the_field(messages, param, match):
    with pytest.raises(ToolRequestError, match=match) as e:
        template_messages(messages)
    assert e.value.param == param


def test_tool_choice_modes_and_errors():
    assert tool_choice_mode("auto", TOOLS) == ("auto", None)
    assert tool_choice_mode("none", TOOLS) == ("none", None)
    assert tool_choice_mode({"type": "function", "function": {"name": "get_time"}}, TOOLS) == ("function", "get_time")
    for choice, match in (("required", "no tools"), ("maybe", "must be 'none'"),
                          ({"type": "function", "function": {"name": "get_news"}}, r"'get_news', which is not in tools \(get_weather, get_time\)")):
        with pytest.raises(ToolRequestError, match=match) as e:
            tool_choice_mode(choice, TOOLS if choice != "required" else None)
        assert e.value.param == "tool_choice"
    with pytest.raises(ToolRequestError, match=r"tools\[0\] must be") as e:
        tool_choice_mode("auto", [{"name": "get_weather"}])  # the flat (Responses API) shape is not a chat tool
    assert e.value.param == "tools.0"


@pytest.mark.parametrize("fmt, required, named", [
    ("hermes", "<tool_call>\n", '<tool_call>\n{"name": "get_weather", "arguments": '),
    ("qwen3", "<tool_call>\n", '<tool_call>\n{"name": "get_weather", "arguments": '),
    ("mistral", "[TOOL_CALLS][", '[TOOL_CALLS][{"name": "get_weather", "arguments": '),
    ("llama3", '{"name": "', '{"name": "get_weather", "parameters": '),
])
def test_forced_prefixes(fmt, required, named):
    f = BUILTIN_FORMATS[fmt]
    assert forced_prefix(f, "required") == required
    assert forced_prefix(f, "function", "get_weather") == named
    assert forced_prefix(f, "auto") == forced_prefix(f, "none") == ""
    # The named prefix is the start of the JSON the model would write for that call.
    body = named.split("{", 1)[1]
    assert json.loads("{" + body + "{}}") == {f.name_key: "get_weather", f.arguments_keys[0]: {}}


def test_forcing_needs_a_known_call_format():
    declared = ToolFormat(call_start="<fn>", call_end="</fn>", name_key="tool", arguments_keys=("args",))
    assert forced_prefix(declared, "function", "f") == '<fn>{"tool": "f", "args": '
    for fmt in (None, BUILTIN_FORMATS["think"]):
        with pytest.raises(ToolRequestError, match="declare tool_format"):
            prepare_tool_request([{"role": "user", "content": "x"}], TOOLS, "required", fmt)
    # auto needs no format: the reply is then read as plain text.
    assert prepare_tool_request([{"role": "user", "content": "x"}], TOOLS, None, None).prefix == ""


THINKING_TEMPLATE = (  # a template whose generation prompt opens the reasoning block (Qwen3-Thinking / R1 style)
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if tools %}[{{ tools | length }} tools]{% endif %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% if enable_thinking is not defined or enable_thinking %}<think>\n{% endif %}{% endif %}"
)


def test_start_reply_renders_forces_and_primes_the_parser(smol_tokenizer):
    from sftune.infer.toolcalls import merge_deltas

    tok = smol_tokenizer
    tok_template, tok.chat_template = tok.chat_template, THINKING_TEMPLATE
    try:
        msgs = [{"role": "user", "content": "Weather in Paris?"}]
        qwen3 = BUILTIN_FORMATS["qwen3"]
        # auto: the prompt opens <think>, so the reply starts inside the reasoning.
        text, parser = prepare_and_start(tok, msgs, "auto", qwen3)
        assert text.endswith("<|im_start|>assistant\n<think>\n") and "[2 tools]" in text
        deltas = parser.feed("Need the tool.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>")
        deltas += parser.finish()
        merged = merge_deltas(deltas)
        assert merged["reasoning_content"] == "Need the tool." and merged["content"] is None
        assert merged["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
        # A forced call closes the opened reasoning first, and the parser already holds the prefix.
        text, parser = prepare_and_start(tok, msgs, {"type": "function", "function": {"name": "get_time"}}, qwen3)
        assert text.endswith('<think>\n</think>\n\n<tool_call>\n{"name": "get_time", "arguments": ')
        deltas = parser.feed("{}}\n</tool_call>") + parser.finish()
        assert [d["tool_calls"][0]["function"]["name"] for d in deltas] == ["get_time"]
        assert parser.result().reasoning_content is None
        # template_kwargs reach the template: no opened block, so no closing marker is forced.
        text, _ = prepare_and_start(tok, msgs, "required", qwen3, enable_thinking=False)
        assert text.endswith("<|im_start|>assistant\n<tool_call>\n")
    finally:
        tok.chat_template = tok_template


def prepare_and_start(tok, msgs, choice, fmt, **kw):
    from sftune.infer.toolrequest import start_reply

    return start_reply(tok, prepare_tool_request(msgs, TOOLS, choice, fmt), **kw)


# The call layout of sftune's built-in Hermes/Qwen3 templates: a newline before each <tool_call>,
# even in a call-only turn, which a format spec alone cannot know.
NEWLINE_CALLS = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% if m.role == 'assistant' and open_think %}<think>\n{{ m.reasoning_content or '' }}\n</think>\n\n{% endif %}{{ m.content }}"
    "{% for tc in m.tool_calls or [] %}{{ '\n<tool_call>\n{\"name\": \"' ~ tc.function.name ~ '\", \"arguments\": ' ~ (tc.function.arguments | tojson) ~ '}\n</tool_call>' }}{% endfor %}"
    "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% if open_think %}<think>\n{% endif %}{% endif %}"
)


@pytest.mark.parametrize("open_think", [False, True])
def test_forced_call_follows_the_templates_own_layout(smol_tokenizer, open_think):
    from sftune.infer.toolcalls import merge_deltas
    from sftune.infer.toolrequest import probe_call_layout

    tok = smol_tokenizer
    saved, tok.chat_template = tok.chat_template, NEWLINE_CALLS
    try:
        hermes = BUILTIN_FORMATS["hermes"]
        assert probe_call_layout(tok, hermes, TOOLS, open_think=open_think) == (
            ("\n</think>\n\n" if open_think else "") + '\n<tool_call>\n{"name": "', '", "arguments": ')
        msgs = [{"role": "user", "content": "Weather in Paris?"}]
        text, parser = prepare_and_start(tok, msgs, {"type": "function", "function": {"name": "get_weather"}}, hermes, open_think=open_think)
        opened = "<think>\n\n</think>\n\n" if open_think else ""
        assert text.endswith('<|im_start|>assistant\n' + opened + '\n<tool_call>\n{"name": "get_weather", "arguments": ')
        deltas = parser.feed('{"city": "Paris"}}\n</tool_call>') + parser.finish()
        assert merge_deltas(deltas)["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
        assert parser.result().reasoning_content is None and parser.result().content is None
        text, _ = prepare_and_start(tok, msgs, "required", hermes, open_think=open_think)
        assert text.endswith('<|im_start|>assistant\n' + opened + '\n<tool_call>\n{"name": "')
        # A format that does not read the template's calls is not trusted: the declared prefix is used.
        mine = ToolFormat(call_start="<fn>", call_end="</fn>")
        assert probe_call_layout(tok, mine, TOOLS, open_think=open_think) is None
    finally:
        tok.chat_template = saved


def test_a_template_taking_json_text_gets_it_at_inference_as_in_training(smol_tokenizer, tmp_path):
    """vLLM's InternLM2 template prints arguments as they are: training gives them to it as JSON
    text (a dict would print as Python's repr), and so does serving, for the same prompt."""
    from pathlib import Path

    from sftune.data.readers import read_conversations
    from sftune.data.render import ChatRenderer
    from sftune.data.report import DataReport
    from sftune.infer.toolrequest import start_reply

    tok = smol_tokenizer
    tok.chat_template = (Path(__file__).parents[1] / "data/fixtures/templates/vllm_tool_chat_template_internlm2_tool.jinja").read_text()
    request = [{"role": "user", "content": "Weather in Oslo?"}, *ROUND_TRIP[2:4]]
    prompt, _ = start_reply(tok, prepare_tool_request(request, TOOLS, "auto", BUILTIN_FORMATS["hermes"]))
    assert '{"name": "get_weather", "arguments": {"city": "Oslo"}}' in prompt and "'city'" not in prompt

    row = [*request, {"role": "assistant", "content": "3 °C in Oslo."}]
    row[1] = {("reasoning_content" if k == "reasoning" else k): v for k, v in row[1].items()}  # the data's name for it
    f = tmp_path / "agent.jsonl"
    f.write_text(json.dumps({"messages": row, "tools": TOOLS}) + "\n", encoding="utf-8")
    conv = read_conversations(str(f), DataReport())[0]
    renderer = ChatRenderer(tok, tok.chat_template)
    assert renderer.call_form.arguments == "string"
    assert renderer.render(conv.to_messages(renderer.call_form)[:3], conv.tools, add_generation_prompt=True) == prompt


def test_a_prompt_with_earlier_calls_gets_the_ids_training_gave_them(smol_tokenizer, tmp_path):
    """A template that refuses calls without ids (Mistral's) gets the same generated ids in
    generate/eval prompts as in training, for data that has none (ShareGPT function calls)."""
    from sftune.data.readers import read_conversations
    from sftune.data.report import DataReport
    from sftune.data.toolcalls import template_call_form
    from sftune.infer.generate import render_prompt

    tok = smol_tokenizer
    tok.chat_template = (
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content or '' }}{% for c in m.tool_calls or [] %}"
        "{% if c.id is not defined %}{{ raise_exception('Tool call IDs should be alphanumeric strings with length 9!') }}{% endif %}"
        "<call id={{ c.id }}>{{ c.function.name }}{{ c.function.arguments | tojson }}</call>{% endfor %}"
        "{% if m.role == 'tool' %} for {{ m.tool_call_id }}{% endif %}<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    assert template_call_form(tok, None).ids
    f = tmp_path / "sharegpt.jsonl"
    f.write_text(json.dumps({"conversations": [
        {"from": "human", "value": "Weather in Oslo?"},
        {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Oslo"}})},
        {"from": "observation", "value": "3"}, {"from": "human", "value": "And now?"}, {"from": "gpt", "value": "Still 3."}]}) + "\n")
    conv = read_conversations(str(f), DataReport())[0]
    trained = conv.to_messages(template_call_form(tok, None))
    call_id = trained[1]["tool_calls"][0]["id"]
    assert len(call_id) == 9 and trained[2]["tool_call_id"] == call_id  # the result answers the call
    prompt = render_prompt(tok, conv)
    assert f"<call id={call_id}>get_weather" in prompt and f" for {call_id}<|end|>" in prompt
    assert prompt == tok.apply_chat_template(trained[:-1], tokenize=False, add_generation_prompt=True)
