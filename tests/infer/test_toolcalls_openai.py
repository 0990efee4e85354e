"""The shapes the parser produces, read by the official ``openai`` client's own types and stream
accumulator: a whole response's ``message.tool_calls`` / ``reasoning_content`` / ``finish_reason``,
and streamed chunks whose accumulated snapshot equals the whole response."""

from __future__ import annotations

import json

import pytest

from sftune.infer.toolcalls import ToolCallParser, parse_output
from sftune.infer.toolformat import BUILTIN_FORMATS

openai = pytest.importorskip("openai")

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
REPLY = ('<think>\nTwo cities.\n</think>\n\nLet me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n'
         '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lima"}}\n</tool_call>')


def ids():
    n = iter(range(100))
    return lambda: f"call_{next(n)}"


def completion(parsed, finish: str) -> dict:
    """The response body a server builds from a parsed reply (the wiring proposed for server.py)."""
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": parsed.message(), "finish_reason": parsed.finish_reason(finish), "logprobs": None}]}


def chunk(delta: dict, finish=None) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}


def test_whole_response_reads_as_openai_types():
    from openai.types.chat import ChatCompletion

    parsed = parse_output(REPLY, BUILTIN_FORMATS["qwen3"], make_id=ids())
    r = ChatCompletion.model_validate(completion(parsed, "stop"))
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls" and msg.content == "Let me check."
    assert msg.reasoning_content == "Two cities."  # an extra field the client keeps (as vLLM/DeepSeek send it)
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in msg.tool_calls] == [
        ("call_0", "get_weather", {"city": "Oslo"}), ("call_1", "get_weather", {"city": "Lima"})]
    # The assistant message goes back into the next request unchanged (the round trip the client makes).
    follow_up = [{"role": "user", "content": "Oslo and Lima?"}, msg.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": "call_0", "content": "3"}, {"role": "tool", "tool_call_id": "call_1", "content": "20"}]
    from sftune.infer.toolrequest import template_messages

    assert template_messages(follow_up)[1]["tool_calls"][1]["function"]["arguments"] == {"city": "Lima"}


@pytest.mark.parametrize("step", [1, 4, 17])
def test_streamed_chunks_accumulate_to_the_whole_response(step):
    from openai.lib.streaming.chat import ChatCompletionStreamState
    from openai.types.chat import ChatCompletionChunk

    whole = parse_output(REPLY, BUILTIN_FORMATS["qwen3"], make_id=ids())
    state = ChatCompletionStreamState(input_tools=TOOLS)
    parser = ToolCallParser(BUILTIN_FORMATS["qwen3"], make_id=ids())
    state.handle_chunk(ChatCompletionChunk.model_validate(chunk({"role": "assistant", "content": ""})))
    for i in range(0, len(REPLY), step):
        for d in parser.feed(REPLY[i:i + step]):
            state.handle_chunk(ChatCompletionChunk.model_validate(chunk(d)))
    for d in parser.finish():
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk(d)))
    state.handle_chunk(ChatCompletionChunk.model_validate(chunk({}, parser.result().finish_reason("stop"))))
    final = state.get_final_completion().choices[0]
    assert final.finish_reason == "tool_calls"
    assert [(c.id, c.function.name, c.function.arguments) for c in final.message.tool_calls] == [
        (c["id"], c["function"]["name"], c["function"]["arguments"]) for c in whole.tool_calls]
    assert final.message.content == whole.content == "Let me check."
    assert getattr(final.message, "reasoning_content", None) == whole.reasoning_content
