"""Tool calling through the server, driven by the official openai client.

The tiny random model cannot be taught to call a tool in a unit test, so generation is replaced
by a scripted reply (the rest is real: the request model, the chat template, the forced call
prefix, the reply parser, plain and streamed responses). The real model's round trip after
training on the tool demo is the slow test in tests/test_e2e_tools.py.
"""

from __future__ import annotations

import json

import pytest

from sftune.data.templates import BUILTIN_TEMPLATES

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city"]}}}]
ASK = [{"role": "user", "content": "What's the weather in Oslo?"}]
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'


class Script:
    """Stands in for ``stream_generate``: records the prompt, replays ``reply`` in small pieces."""

    def __init__(self):
        self.reply, self.prompts = "", []

    def __call__(self, model, tokenizer, prompt_ids, *, on_text=None, **kw):
        self.prompts.append(tokenizer.decode(prompt_ids))
        for i in range(0, len(self.reply), 3):
            if on_text:
                on_text(self.reply[i:i + 3])
        return {"text": self.reply, "finish_reason": "stop", "prompt_tokens": len(prompt_ids), "completion_tokens": 5}


@pytest.fixture(scope="module")
def script():
    return Script()


@pytest.fixture(scope="module")
def base_url(tiny, script, run_app):
    import sftune.infer.generate as gen
    from sftune.infer.server import create_app

    model, tok = tiny
    tok = type(tok).from_pretrained(tok.name_or_path)  # a copy: the module-scoped tokenizer keeps its template
    tok.chat_template = BUILTIN_TEMPLATES["hermes"]
    mp = pytest.MonkeyPatch()
    mp.setattr(gen, "stream_generate", script)
    app = create_app(model, tok, model_name="tiny-tools", max_prompt_tokens=4000, max_tokens_limit=64)
    try:
        with run_app(app) as url:
            yield url
    finally:
        mp.undo()


@pytest.fixture()
def client(base_url):
    from openai import OpenAI

    return OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=60)


def test_a_generated_call_comes_back_as_tool_calls(client, script):
    script.reply = CALL
    r = client.chat.completions.create(model="m", messages=ASK, tools=TOOLS, max_tokens=32)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_") and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    assert '"name": "get_weather"' in script.prompts[-1] and "Current weather in a city" in script.prompts[-1]  # tools rendered


def test_streamed_call_and_reasoning_deltas(client, script):
    script.reply = "<think>\nThe user wants weather.\n</think>\n\n" + CALL
    stream = client.chat.completions.create(model="m", messages=ASK, tools=TOOLS, max_tokens=32, stream=True)
    reasoning, calls, finish = "", {}, None
    for chunk in stream:
        d = chunk.choices[0].delta
        reasoning += (d.model_extra or {}).get("reasoning_content") or ""
        for tc in d.tool_calls or []:
            c = calls.setdefault(tc.index, {"name": "", "arguments": "", "id": None})
            c["id"] = tc.id or c["id"]
            c["name"] += tc.function.name or ""
            c["arguments"] += tc.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert reasoning.strip() == "The user wants weather."
    assert finish == "tool_calls" and calls[0]["name"] == "get_weather" and json.loads(calls[0]["arguments"]) == {"city": "Oslo"}


def test_round_trip_renders_the_call_as_an_object_and_the_result_as_a_tool_turn(client, script):
    script.reply = CALL
    first = client.chat.completions.create(model="m", messages=ASK, tools=TOOLS, max_tokens=32).choices[0].message
    script.reply = "It is 3 °C and cloudy in Oslo."
    follow = [*ASK, first.model_dump(exclude_none=True),
              {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": '{"temperature": 3, "sky": "cloudy"}'}]
    r = client.chat.completions.create(model="m", messages=follow, tools=TOOLS, max_tokens=32)
    assert r.choices[0].message.content == "It is 3 °C and cloudy in Oslo." and r.choices[0].finish_reason == "stop"
    prompt = script.prompts[-1]
    # The earlier call is rendered as training renders it: arguments an object, not a JSON string in a string.
    assert '"arguments": {"city": "Oslo"}' in prompt and '\\"city' not in prompt
    assert '{"temperature": 3, "sky": "cloudy"}' in prompt and prompt.rstrip().endswith("assistant")


def test_named_tool_choice_forces_the_call_and_none_hides_the_tools(client, script):
    script.reply = '{"city": "Oslo"}}\n</tool_call>'  # the model continues the forced prefix
    forced = {"type": "function", "function": {"name": "get_weather"}}
    r = client.chat.completions.create(model="m", messages=ASK, tools=TOOLS, tool_choice=forced, max_tokens=32)
    assert script.prompts[-1].endswith('{"name": "get_weather", "arguments": ')
    assert r.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert json.loads(r.choices[0].message.tool_calls[0].function.arguments) == {"city": "Oslo"}

    script.reply = "No tools today."
    r = client.chat.completions.create(model="m", messages=ASK, tools=TOOLS, tool_choice="none", max_tokens=32)
    assert "get_weather" not in script.prompts[-1] and r.choices[0].message.content == "No tools today."


def test_bad_tool_requests_are_400s_naming_the_field(client):
    import openai

    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="m", messages=ASK, tools=TOOLS, max_tokens=8,
                                       tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert "get_time" in str(e.value)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="m", max_tokens=8, messages=[*ASK, {"role": "tool", "tool_call_id": "x", "content": "1"}])
    assert "tool" in str(e.value)
