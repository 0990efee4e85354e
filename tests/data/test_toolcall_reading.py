"""Agent and reasoning data in: OpenAI/HF tool calls, ShareGPT function calling, bad rows by line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sftune.config import DataSource
from sftune.data.conversation import Conversation, Message
from sftune.data.readers import read_conversations
from sftune.data.report import DataError, DataReport
from sftune.data.toolcalls import tool_calls_for_template

FIXTURES = Path(__file__).parent / "fixtures"


def read(name: str, strict: bool = False):
    report = DataReport(strict=strict)
    return read_conversations(DataSource(path=str(FIXTURES / name)), report), report


def test_openai_tool_messages_reach_the_template_as_inference_gets_them():
    convs, report = read("tool_messages.jsonl")
    assert [c.source.line for c in convs] == [1, 2, 3, 7]
    first = convs[0]
    assert [t["function"]["name"] for t in first.tools] == ["get_weather", "get_time"]  # tools given as a JSON string
    assert first.to_messages() == [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Oslo?"},
        # content null kept as null; arguments (a JSON string in the data) handed over as a mapping
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call00001a", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "content": '{"temp_c": 3}', "tool_call_id": "call00001a", "name": "get_weather"},
        {"role": "assistant", "content": "It is 3 °C in Oslo."},
    ]
    # canonical JSON keeps every key as the data had it (arguments still a string)
    assert first.to_dict()["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"city": "Oslo"}'
    assert first.to_dict()["tools"] == first.tools
    # reasoning under reasoning_content, reasoning and thinking all land in reasoning_content
    second = convs[1].to_messages()
    assert [m.get("reasoning_content") for m in second if m["role"] == "assistant"] == [
        "I should call get_time.", "The tool said 14:05.", "Two calls at once.", "Both results are in."]
    assert second[1]["content"] == "" and "tool_calls" in second[1]  # empty string kept as empty string
    assert [len(m.get("tool_calls", [])) for m in second] == [0, 1, 0, 0, 0, 2, 0, 0, 0]


def test_openai_tool_bad_rows_by_line_and_reason():
    _, report = read("tool_messages.jsonl")
    assert report.rows_in == 7
    assert dict(report.dropped) == {
        "tool call arguments are not valid JSON": 1,
        "tool result with no call before it": 1,
        "tools are not a list of objects": 1,
    }
    assert {k: [e.rsplit("/", 1)[-1] for e in v] for k, v in report.examples.items()} == {
        "tool call arguments are not valid JSON": ["tool_messages.jsonl:4"],
        "tool result with no call before it": ["tool_messages.jsonl:5"],
        "tools are not a list of objects": ["tool_messages.jsonl:6"],
    }
    # a call naming a tool absent from `tools`: kept, counted and located
    assert dict(report.warnings) == {"tool call names a tool absent from 'tools'": 1}
    assert report.warning_examples["tool call names a tool absent from 'tools'"][0].endswith("tool_messages.jsonl:7")
    assert "warning" in report.summary()


def test_strict_mode_stops_at_the_first_bad_tool_row():
    with pytest.raises(DataError, match=r"tool_messages.jsonl:4: tool call arguments are not valid JSON"):
        read("tool_messages.jsonl", strict=True)


def test_strict_mode_rejects_a_call_to_an_unknown_tool(tmp_path):
    row = json.loads((FIXTURES / "tool_messages.jsonl").read_text().splitlines()[6])
    p = tmp_path / "t.jsonl"
    p.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=r"(?s)t.jsonl:1: tool call names a tool absent from 'tools'.*get_time"):
        read_conversations(DataSource(path=str(p)), DataReport(strict=True))


def test_sharegpt_function_calling():
    convs, report = read("sharegpt_tools.jsonl")
    assert [c.source.line for c in convs] == [1, 2]
    assert convs[0].to_messages() == [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "content": '{"temp_c": 3}', "name": "get_weather"},
        {"role": "assistant", "content": "3 °C in Oslo."},
    ]
    # bare function schemas are wrapped into OpenAI form, as an OpenAI request would carry them
    assert convs[0].tools[0]["type"] == "function" and convs[0].tools[0]["function"]["name"] == "get_weather"
    # a text turn followed by a list of calls is one generated turn; observations are named by call order
    m = convs[1].to_messages()
    assert [x["role"] for x in m] == ["user", "assistant", "tool", "tool", "assistant"]
    assert m[1]["content"] == "Checking both." and [c["function"]["name"] for c in m[1]["tool_calls"]] == ["get_weather", "get_time"]
    assert [x.get("name") for x in m[2:4]] == ["get_weather", "get_time"]
    assert dict(report.dropped) == {"tools are not valid JSON": 1, "tool calls are not valid JSON": 1}
    assert [e.rsplit("/", 1)[-1] for e in report.examples["tools are not valid JSON"]] == ["sharegpt_tools.jsonl:3"]
    assert [e.rsplit("/", 1)[-1] for e in report.examples["tool calls are not valid JSON"]] == ["sharegpt_tools.jsonl:4"]


def test_keys_the_data_lacks_stay_absent_and_extra_keys_pass_through(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text(json.dumps({"messages": [
        {"role": "user", "content": "Hi", "lang": "en"},
        {"role": "assistant", "content": "Hello", "refusal": None},
    ]}) + "\n")
    [c] = read_conversations(DataSource(path=str(p)), DataReport())
    assert c.to_messages() == [{"role": "user", "content": "Hi", "lang": "en"}, {"role": "assistant", "content": "Hello"}]
    assert not c.is_plain and Conversation.chat([Message("user", "a"), Message("assistant", "b")]).is_plain


def test_arguments_normalisation_is_vllms():
    calls = [{"type": "function", "function": {"name": "f", "arguments": ""}},
             {"type": "function", "function": {"name": "g", "arguments": '{"x": [1, 2]}'}}]
    assert [c["function"]["arguments"] for c in tool_calls_for_template(calls)] == [{}, {"x": [1, 2]}]
    assert calls[1]["function"]["arguments"] == '{"x": [1, 2]}'  # the input is not modified
    assert tool_calls_for_template([]) is None


def test_canonical_json_round_trips(tmp_path):
    convs, _ = read("tool_messages.jsonl")
    convs += read("sharegpt_tools.jsonl")[0]
    convs[1].messages[1].trainable = False
    p = tmp_path / "canon.jsonl"
    p.write_text("".join(json.dumps(c.to_dict(), ensure_ascii=False) + "\n" for c in convs))
    again = read_conversations(DataSource(path=str(p)), DataReport())
    assert [c.to_dict() for c in again] == [c.to_dict() for c in convs]
    assert [c.to_messages() for c in again] == [c.to_messages() for c in convs]


def test_tool_result_given_as_an_object_becomes_its_json_text(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text(json.dumps({"messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "w", "arguments": {}}}]},
        {"role": "tool", "content": {"temp_c": 3}},
        {"role": "assistant", "content": "3 °C."},
    ]}) + "\n")
    [c] = read_conversations(DataSource(path=str(p)), DataReport())
    assert c.messages[2].content == '{"temp_c": 3}'
    assert c.to_messages()[1] == {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {"name": "w", "arguments": {}}}]}
