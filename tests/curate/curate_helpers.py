"""Rows for the curation tests, built in the test (imported as `curate_helpers`)."""

from __future__ import annotations

import json
from pathlib import Path

from sftune.data.conversation import Conversation, Message, Source


def chat(prompt: str, answer: str | None = None, line: int | None = None, system: str | None = None) -> Conversation:
    msgs = [Message("system", system)] if system else []
    msgs.append(Message("user", prompt))
    if answer is not None:
        msgs.append(Message("assistant", answer))
    return Conversation.chat(msgs, source=Source("test.jsonl", line=line) if line else None)


def write_jsonl(path: Path, convs: list[Conversation]) -> Path:
    path.write_text("".join(json.dumps(c.to_dict(), ensure_ascii=False) + "\n" for c in convs), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


TOOL_FIXTURE = Path(__file__).resolve().parent.parent / "data" / "fixtures" / "tool_messages.jsonl"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def tool_chat(city: str = "Oslo", line: int | None = None, answer: bool = True) -> Conversation:
    """An agent row with everything a plain {role, content} copy would lose: tool schemas, a
    call-only turn (content null) with reasoning, a call whose arguments are an object and one
    whose arguments are a JSON string, tool results with ids and names, and a key sftune does not model."""
    calls = [
        {"id": "call0001a", "type": "function", "function": {"name": "get_weather", "arguments": {"city": city}}},
        {"id": "call0001b", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
    ]
    msgs = [
        Message("user", f"Weather in {city} and Rome?"),
        Message("assistant", "", tool_calls=calls, content_null=True, reasoning="Two cities: two calls."),
        Message("tool", '{"temp_c": 3}', tool_call_id="call0001a", name="get_weather"),
        Message("tool", '{"temp_c": 18}', tool_call_id="call0001b", name="get_weather", extra={"lang": "en"}),
    ]
    if answer:
        msgs.append(Message("assistant", f"{city} 3 °C, Rome 18 °C.", reasoning="Both results are in."))
    return Conversation.chat(msgs, source=Source("tools.jsonl", line=line) if line else None, tools=[WEATHER])
