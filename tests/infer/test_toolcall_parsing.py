"""Reading generated text back into content, reasoning and OpenAI tool calls, whole and streamed."""

from __future__ import annotations

import doctest
import itertools
import json
import random

import pytest

from sftune.infer import toolcalls, toolformat, toolrequest
from sftune.infer.toolcalls import ToolCallParser, merge_deltas, parse_output, prompt_opens_reasoning
from sftune.infer.toolformat import BUILTIN_FORMATS, ToolFormat, ToolFormatError, detect_format, resolve_format

HERMES, QWEN3, LLAMA, MISTRAL = (BUILTIN_FORMATS[k] for k in ("hermes", "qwen3", "llama3", "mistral"))


def ids():
    """Deterministic call ids, so whole and streamed parses can be compared key for key."""
    counter = itertools.count()
    return lambda: f"call_{next(counter)}"


def calls(result) -> list[tuple[str, dict]]:
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in result.tool_calls]


@pytest.mark.parametrize("module", [toolformat, toolcalls, toolrequest])
def test_doctests(module):
    # The docstring examples are the documentation of these data functions: run them.
    res = doctest.testmod(module)
    assert res.attempted > 0 and res.failed == 0


# ---- each format ----------------------------------------------------------------------------------
def test_hermes_several_calls_with_text_between():
    text = ('I will look both up.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>\n'
            '<tool_call>\n{"name": "get_weather", "parameters": {"city": "北京"}}\n</tool_call>')
    r = parse_output(text, HERMES, make_id=ids())
    assert r.content == "I will look both up."
    assert calls(r) == [("get_weather", {"city": "Paris", "unit": "celsius"}), ("get_weather", {"city": "北京"})]
    assert [c["id"] for c in r.tool_calls] == ["call_0", "call_1"]
    assert all(c["type"] == "function" for c in r.tool_calls)
    assert r.tool_calls[1]["function"]["arguments"] == '{"city": "北京"}'  # JSON string, unicode kept
    assert r.problems == [] and r.reasoning_content is None
    assert r.finish_reason("stop") == "tool_calls" and r.finish_reason("length") == "length"
    msg = r.message()
    assert msg["content"] == "I will look both up." and len(msg["tool_calls"]) == 2 and "reasoning_content" not in msg


def test_random_ids_are_openai_style_and_distinct():
    r = parse_output('<tool_call>{"name": "f", "arguments": {}}</tool_call><tool_call>{"name": "g", "arguments": {}}</tool_call>', HERMES)
    a, b = (c["id"] for c in r.tool_calls)
    assert a != b and a.startswith("call_") and len(a) == 29 and a[5:].isalnum()
    assert r.content is None  # a reply that only calls tools has null content, as OpenAI returns it


def test_qwen3_reasoning_then_call_then_answer_text():
    text = ('<think>\nThe user wants Tokyo weather.\nI should call the tool.\n</think>\n\n'
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Tokyo"}}\n</tool_call>')
    r = parse_output(text, QWEN3, make_id=ids())
    assert r.reasoning_content == "The user wants Tokyo weather.\nI should call the tool."
    assert r.content is None and calls(r) == [("get_weather", {"city": "Tokyo"})]
    r = parse_output("<think>\nshort\n</think>\n\nIt is 21 °C in Tokyo.", QWEN3)
    assert (r.reasoning_content, r.content, r.tool_calls) == ("short", "It is 21 °C in Tokyo.", [])
    assert r.finish_reason("stop") == "stop"


def test_reasoning_opened_by_the_generation_prompt():
    prompt = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n"
    assert prompt_opens_reasoning(prompt, QWEN3)
    r = parse_output("Greeting; answer briefly.\n</think>\n\nHello!", QWEN3, in_reasoning=True)
    assert (r.reasoning_content, r.content) == ("Greeting; answer briefly.", "Hello!")
    # Out of tokens while still thinking: all of it is reasoning, the answer is empty.
    r = parse_output("Still thinking about", QWEN3, in_reasoning=True)
    assert (r.reasoning_content, r.content) == ("Still thinking about", "")
    assert not prompt_opens_reasoning("<|im_start|>assistant\n<think>\n\n</think>\n\n", QWEN3)
    assert not prompt_opens_reasoning("assistant\n", None)


def test_llama31_json_with_and_without_python_tag():
    r = parse_output('{"name": "get_weather", "parameters": {"city": "Lima", "unit": "fahrenheit"}}', LLAMA, make_id=ids())
    assert calls(r) == [("get_weather", {"city": "Lima", "unit": "fahrenheit"})] and r.content is None
    r = parse_output('<|python_tag|>{"name": "get_weather", "parameters": {"city": "Lima"}}', LLAMA)
    assert calls(r) == [("get_weather", {"city": "Lima"})]
    r = parse_output('{"name": "a", "parameters": {}}; {"name": "b", "parameters": {"x": 1}}', LLAMA)
    assert calls(r) == [("a", {}), ("b", {"x": 1})]


def test_llama31_ordinary_json_answers_stay_content():
    # A reply that is JSON but not a call (the user asked for JSON) must not become a call.
    for text in ('{"name": "Alice", "age": 30}', '{"name": "Alice", "parameters": {}} is the call you want', '[1, 2, 3]'):
        r = parse_output(text, LLAMA)
        assert r.content == text and r.tool_calls == [] and r.problems == []


def test_mistral_tool_calls_list():
    text = '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Rome"}, "id": "abc123XYZ"}, {"name": "get_time", "arguments": {}}]'
    r = parse_output(text, MISTRAL, make_id=ids())
    assert calls(r) == [("get_weather", {"city": "Rome"}), ("get_time", {})]
    assert [c["id"] for c in r.tool_calls] == ["abc123XYZ", "call_0"]  # the model's own id is kept


def test_mistral_calls_when_decoding_dropped_the_special_marker():
    r = parse_output('[{"name": "get_weather", "arguments": {"city": "Rome"}, "id": "abc123XYZ"}]', MISTRAL, make_id=ids())
    assert calls(r) == [("get_weather", {"city": "Rome"})] and r.tool_calls[0]["id"] == "abc123XYZ"
    r = parse_output('[{"name": "Rome", "population": 2800000}]', MISTRAL)  # a JSON answer, not a call
    assert r.tool_calls == [] and r.content.startswith("[{")


def test_declared_format_from_config():
    fmt = resolve_format({"name": "mine", "call_start": "<function_call>", "call_end": "</function_call>",
                          "name_key": "tool", "arguments_keys": ["args"], "reasoning_start": "[R]", "reasoning_end": "[/R]"})
    r = parse_output('[R]need data[/R]OK. <function_call>{"tool": "lookup", "args": {"q": "x"}}</function_call>', fmt, make_id=ids())
    assert (r.reasoning_content, r.content, calls(r)) == ("need data", "OK.", [("lookup", {"q": "x"})])
    # The spec is strict and says which key is wrong.
    with pytest.raises(ToolFormatError, match="reasoning_start and reasoning_end go together"):
        resolve_format({"call_start": "<f>", "reasoning_start": "<r>"})
    with pytest.raises(ToolFormatError, match="'call_strat'.*known keys"):
        resolve_format({"call_strat": "<f>"})
    with pytest.raises(ToolFormatError, match="unknown tool_format 'gpt'"):
        resolve_format("gpt")
    assert resolve_format("none", "<tool_call>") is None and resolve_format("qwen").name == "qwen3"


def test_detect_format_from_template_text(smol_tokenizer):
    from sftune.data.templates import BUILTIN_TEMPLATES

    assert detect_format(smol_tokenizer.chat_template) is None  # SmolLM2's template has no tools
    assert all(detect_format(t) is None for t in BUILTIN_TEMPLATES.values() if "<tool_call>" not in t)
    assert detect_format("{%- for tool_call in message.tool_calls %}{{- '<tool_call>\\n' }}").name == "hermes"
    assert detect_format("{{- '<think>\\n' }}{{- '<tool_call>\\n' }}").name == "qwen3"
    assert detect_format("<|start_header_id|>ipython<|end_header_id|>{{- '<|python_tag|>' }}").name == "llama3"
    assert detect_format('{{ "[TOOL_CALLS]" }}').name == "mistral"
    assert detect_format("{{ '<think>' }}").name == "think" and not detect_format("{{ '<think>' }}").has_calls
    assert resolve_format("auto", "{{ '<tool_call>' }}").name == "hermes"


# ---- what is not a valid call --------------------------------------------------------------------
@pytest.mark.parametrize("body, reason", [
    ('{"name": "f", "arguments": {"x": 1}', "not valid JSON"),
    ('{"arguments": {"x": 1}}', "non-empty string 'name'"),
    ('{"name": "f", "arguments": [1]}', "must be a JSON object"),
    ('{"name": "f", "arguments": "{bad"}', "a string that is not valid JSON"),
    ("", "empty call"),
])
def test_malformed_calls_are_kept_as_content_and_reported(body, reason):
    text = f"Checking.\n<tool_call>\n{body}\n</tool_call>\nDone."
    r = parse_output(text, HERMES)
    assert r.tool_calls == []
    assert r.content == f"Checking.\n<tool_call>\n{body}\n</tool_call>\nDone."  # nothing the model wrote is lost
    assert len(r.problems) == 1 and reason in r.problems[0] and "hermes" in r.problems[0]


def test_unterminated_call_accepted_when_its_json_is_complete():
    # Generation stopped right after the JSON (a stop string or the token budget): still a call.
    r = parse_output('<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n', HERMES)
    assert calls(r) == [("f", {"a": 1})] and r.problems == []
    r = parse_output('<tool_call>\n{"name": "f", "argu', HERMES)
    assert r.tool_calls == [] and r.content == '<tool_call>\n{"name": "f", "argu' and "unterminated" in r.problems[0]


def test_no_format_passes_text_through_unchanged():
    text = "  <tool_call>{}</tool_call> <think>x</think>\n"
    r = parse_output(text, None)
    assert (r.content, r.reasoning_content, r.tool_calls) == (text, None, [])
    r = parse_output('<tool_call>{"name": "f", "arguments": {}}</tool_call>', QWEN3.without_calls())
    assert r.tool_calls == [] and r.content.startswith("<tool_call>") and r.problems == []


# ---- streaming ------------------------------------------------------------------------------------
CASES = [
    (HERMES, 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "上海", "unit": "celsius"}}\n</tool_call>', False),
    (HERMES, 'a < b and <tool_call> {"name": "f", "arguments": {"x": 1} </tool_call> then <tool_c', False),
    (QWEN3, '<think>\nWeather needs the tool.\n</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>', False),
    (QWEN3, "Plan: greet.\n</think>\n\n  Hello  there!  \n\n", True),
    (QWEN3, "<think></think>It is <b>sunny</b>, 24 °C.", False),
    (LLAMA, '  {"name": "get_weather", "parameters": {"city": "Lima"}}', False),
    (LLAMA, '{"name": "Alice", "age": 3} is a JSON object.', False),
    (LLAMA, 'Sure: <|python_tag|>{"name": "f", "parameters": {"q": "x"}}', False),
    (MISTRAL, 'Two calls. [TOOL_CALLS][{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"k": [1, 2]}}]', False),
    (MISTRAL, '[TOOL_CALLS][{"name": "a", "arguments": {', False),
    (ToolFormat(call_start="<<", call_end=">>", reasoning_start="((", reasoning_end="))"), "x (( y )) z << {\"name\": \"n\"} >> <<", False),
]


def _stream(fmt, text, cuts, in_reasoning):
    p = ToolCallParser(fmt, in_reasoning=in_reasoning, make_id=ids())
    deltas, start = [], 0
    for cut in [*cuts, len(text)]:
        deltas += p.feed(text[start:cut])
        start = cut
    deltas += p.finish()
    return deltas, p.result()


@pytest.mark.parametrize("fmt, text, in_reasoning", CASES)
def test_streamed_deltas_equal_the_whole_parse_at_any_split_points(fmt, text, in_reasoning):
    whole = parse_output(text, fmt, in_reasoning=in_reasoning, make_id=ids())
    rng = random.Random(hash(text) % 1000)
    splits = [list(range(1, len(text)))]  # one character at a time
    splits += [sorted(rng.sample(range(1, len(text)), rng.randint(1, min(12, len(text) - 1)))) for _ in range(150)]
    for cuts in splits:
        deltas, res = _stream(fmt, text, cuts, in_reasoning)
        assert res == whole, cuts
        merged = merge_deltas(deltas)
        assert merged["content"] == (whole.content or None), cuts
        assert merged["reasoning_content"] == whole.reasoning_content, cuts
        assert merged["tool_calls"] == whole.tool_calls, cuts
        assert all(len(d) == 1 and next(iter(d.values())) for d in deltas)  # no empty deltas


def test_streaming_holds_back_only_possible_markers():
    p = ToolCallParser(HERMES, make_id=ids())
    assert p.feed("It is sunny") == [{"content": "It is sunny"}]
    assert p.feed(" today <tool") == [{"content": " today"}]  # "<tool" may open a call; the space waits for text
    assert p.feed("s are nice") == [{"content": " <tools are nice"}]
    assert p.feed(" <tool_call>{\"name\": \"f\", ") == []  # a call is sent whole, once its JSON is complete
    out = p.feed('"arguments": {}}</tool_call>')
    assert out == [{"tool_calls": [{"index": 0, "id": "call_0", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]
    assert p.finish() == [] and p.result().content == "It is sunny today <tools are nice"
    with pytest.raises(RuntimeError, match="new ToolCallParser"):
        p.feed("more")


def test_forced_prefix_is_read_back_as_part_of_the_reply():
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    for fmt, generated in ((HERMES, '{"city": "Paris"}}\n</tool_call>'), (MISTRAL, '{"city": "Paris"}}]'), (LLAMA, '{"city": "Paris"}}')):
        req = toolrequest.prepare_tool_request([{"role": "user", "content": "Paris?"}], tools,
                                               {"type": "function", "function": {"name": "get_weather"}}, fmt)
        p = ToolCallParser(req.parse_format, make_id=ids())
        deltas = p.feed(req.prefix) + p.feed(generated) + p.finish()
        assert merge_deltas(deltas)["tool_calls"] == [{"id": "call_0", "type": "function",
                                                       "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}], fmt.name
