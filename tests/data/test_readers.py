"""Every layout read into the canonical Conversation, on tiny fixtures, with exact expectations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sftune.config import DataSource
from sftune.data.conversation import Message
from sftune.data.readers import detect_format, read_conversations
from sftune.data.report import DataError, DataReport

FIXTURES = Path(__file__).parent / "fixtures"


def read(name_or_path, report: DataReport | None = None, **kw):
    """Read a fixture (or a path) and return (conversations, report)."""
    report = report if report is not None else DataReport()
    source_kw = {k: kw.pop(k) for k in ("format", "columns", "split") if k in kw}
    path = str(FIXTURES / name_or_path) if isinstance(name_or_path, str) else str(name_or_path)
    return read_conversations(DataSource(path=path, **source_kw), report, **kw), report


def msgs(conv) -> list[tuple]:
    return [(m.role, m.content, m.trainable) for m in conv.messages]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# ---- one test per layout --------------------------------------------------------------------------
def test_alpaca_input_joined_system_and_history():
    convs, report = read("alpaca.json")
    assert [msgs(c) for c in convs] == [
        [("user", "Translate to French.\n\nGood morning", None), ("assistant", "Bonjour", None)],
        [("user", "Name a primary colour.", None), ("assistant", "Red.", None)],  # empty input: no blank line
        [
            ("system", "You are terse.", None),
            ("user", "Name a primary colour.", None),
            ("assistant", "Red.", None),
            ("user", "And one more?", None),
            ("assistant", "Blue.", None),
        ],
    ]
    assert {c.kind for c in convs} == {"chat"}
    assert [(c.source.line, c.source.index) for c in convs] == [(2, 0), (7, 1), (12, 2)]
    assert report.rows_in == 3 and report.n_dropped == 0
    assert report.kept == 0  # kept is set by prepare() after tokenising, not by the reader


def test_alpaca_column_mapping():
    convs, _ = read("alpaca_mapped.jsonl", columns={"instruction": "instruct", "input": "context", "output": "label"})
    assert [msgs(c) for c in convs] == [
        [("user", "Add the numbers.\n\n2 and 3", None), ("assistant", "5", None)],
        [("user", "Say hi.", None), ("assistant", "Hi!", None)],
    ]


def test_mapping_names_the_file_column_when_missing(tmp_path):
    p = write_jsonl(tmp_path / "m.jsonl", [{"instruct": "Hi"}])
    convs, report = read(p, columns={"instruction": "instruct", "output": "label"})
    assert convs == [] and dict(report.dropped) == {"missing field 'label'": 1}


def test_unknown_mapping_key_suggests(tmp_path):
    with pytest.raises(DataError, match=r"unknown key 'instrucion' in columns(.|\n)*did you mean 'instruction'"):
        read("alpaca.json", columns={"instrucion": "q"})


def test_sharegpt_roles_and_multi_turn():
    convs, _ = read("sharegpt.jsonl")
    assert [msgs(c) for c in convs] == [
        [
            ("system", "You are terse.", None),
            ("user", "Hi", None),
            ("assistant", "Hello.", None),
            ("user", "2+2?", None),
            ("assistant", "4", None),
        ],
        [("user", "你好 🙂", None), ("assistant", "你好!", None)],
    ]


def test_sharegpt_custom_keys_and_tags_in_object_wrapped_json():
    cols = {"conversations": "dialog", "role": "speaker", "content": "text", "user": "Q", "assistant": "A"}
    convs, _ = read("sharegpt_custom.json", columns=cols)
    assert [msgs(c) for c in convs] == [
        [("user", "Capital of France?", None), ("assistant", "Paris.", None)],
        [("user", "And Italy?", None), ("assistant", "Rome.", None), ("user", "Thanks", None), ("assistant", "You're welcome.", None)],
    ]
    assert [c.source.line for c in convs] == [2, 3]


def test_custom_tag_overrides_a_default_tag(tmp_path):
    # A file where "user" is the model's tag and "client" the person's.
    p = write_jsonl(tmp_path / "s.jsonl", [{"conversations": [{"from": "client", "value": "Hi"}, {"from": "user", "value": "Hello."}]}])
    convs, _ = read(p, columns={"user": "client", "assistant": "user"})
    assert msgs(convs[0]) == [("user", "Hi", None), ("assistant", "Hello.", None)]


def test_sharegpt_top_level_system_column(tmp_path):
    p = write_jsonl(tmp_path / "s.jsonl", [{"system": "Be kind.", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}]}])
    convs, _ = read(p)
    assert msgs(convs[0])[0] == ("system", "Be kind.", None)


def test_messages_weight_tool_and_text_parts():
    convs, _ = read("messages.jsonl")
    assert [msgs(c) for c in convs] == [
        [("system", "Be brief.", None), ("user", "Hi", None), ("assistant", "Hello.", None)],
        [("user", "Draft?", None), ("assistant", "Bad draft.", False), ("user", "Better?", None), ("assistant", "Good answer.", None)],
        [
            ("user", "Weather in Paris?\nToday.", None),
            ("assistant", "Let me check.", None),
            ("tool", '{"temp": 21}', None),
            ("assistant", "21 °C.", None),
        ],
    ]


def test_messages_with_mapped_keys(tmp_path):
    p = write_jsonl(tmp_path / "m.jsonl", [{"chat": [{"who": "user", "said": "Hi"}, {"who": "assistant", "said": "Yo", "w": 0}]}])
    convs, _ = read(p, columns={"messages": "chat", "role": "who", "content": "said", "weight": "w"})
    assert msgs(convs[0]) == [("user", "Hi", None), ("assistant", "Yo", False)]


def test_prompt_completion_strings():
    convs, _ = read("prompt_completion.jsonl")
    assert [c.kind for c in convs] == ["completion", "completion"]
    assert [c.to_dict() for c in convs] == [
        {"prompt": "The capital of France is", "completion": " Paris."},
        {"prompt": "2 + 2 =", "completion": " 4"},
    ]


def test_prompt_completion_message_lists():
    [conv], _ = read("prompt_completion_chat.jsonl")
    assert conv.kind == "chat"
    # Prompt-side assistant turns are context (never trained); the completion side is flagged trainable.
    assert msgs(conv) == [
        ("system", "Be brief.", None),
        ("user", "Hi", None),
        ("assistant", "Hello.", False),
        ("user", "Capital of France?", None),
        ("assistant", "Paris.", True),
    ]


def test_prompt_completion_mixed_types_is_a_bad_row(tmp_path):
    p = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": "Hi", "completion": [{"role": "assistant", "content": "Yo"}]}])
    convs, report = read(p)
    assert convs == [] and dict(report.dropped) == {"field 'completion' is not a string": 1}


def test_text():
    convs, _ = read("text.jsonl")
    assert [(c.kind, msgs(c)) for c in convs] == [
        ("text", [("text", "The quick brown fox jumps over the lazy dog.", True)]),
        ("text", [("text", "日本語のテキスト。", True)]),
    ]


def test_csv_alpaca_with_multiline_field():
    convs, _ = read("alpaca.csv")
    assert [msgs(c) for c in convs] == [
        [("user", "Translate to French.\n\nGood morning", None), ("assistant", "Bonjour", None)],
        [("user", "Write two lines.", None), ("assistant", "Line one,\nline two.", None)],
        [("user", "Name a primary colour.", None), ("assistant", "Red.", None)],
    ]
    assert [c.source.line for c in convs] == [2, 3, 5]  # the quoted field spans lines 3-4


def test_csv_json_encoded_message_column(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text('messages\n"[{""role"": ""user"", ""content"": ""Hi""}, {""role"": ""assistant"", ""content"": ""Yo""}]"\n')
    convs, _ = read(p)
    assert msgs(convs[0]) == [("user", "Hi", None), ("assistant", "Yo", None)]


# ---- detection ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "columns, expected",
    [
        (["instruction", "input", "output"], "alpaca"),
        (["conversations", "id"], "sharegpt"),
        (["messages"], "messages"),
        (["prompt", "completion"], "prompt_completion"),
        (["text", "meta"], "text"),
    ],
)
def test_detect_format(columns, expected):
    assert detect_format(columns, "f.jsonl") == expected


def test_detect_with_mapping_claims_the_column():
    # "conversations" is mapped onto "messages", so it is one candidate, not two.
    assert detect_format(["conversations"], "f", {"messages": "conversations"}) == "messages"
    assert detect_format(["dialog"], "f", {"conversations": "dialog"}) == "sharegpt"


def test_ambiguous_file_names_the_candidates():
    with pytest.raises(DataError) as e:
        read("ambiguous.jsonl")
    msg = str(e.value)
    assert "ambiguous.jsonl" in msg and "messages" in msg and "text" in msg and "--format" in msg
    # Passing the format resolves it.
    convs, _ = read("ambiguous.jsonl", format="messages")
    assert msgs(convs[0]) == [("user", "Hi", None), ("assistant", "Hello.", None)]
    convs, _ = read("ambiguous.jsonl", default_format="text")
    assert convs[0].kind == "text"


def test_unknown_layout_lists_columns_and_layouts():
    with pytest.raises(DataError) as e:
        read("unknown_layout.jsonl")
    msg = str(e.value)
    assert "'question', 'answer'" in msg
    for layout in ("alpaca", "sharegpt", "messages", "prompt_completion", "text"):
        assert layout in msg


def test_unknown_format_name():
    with pytest.raises(DataError, match="unknown format 'chatml'"):
        read("text.jsonl", default_format="chatml")


# ---- system prompt, prompts without answers ------------------------------------------------------
def test_system_prompt_added_only_where_missing():
    convs, _ = read("messages.jsonl", system_prompt="You are sftune.")
    assert [c.messages[0].content for c in convs] == ["Be brief.", "You are sftune.", "You are sftune."]
    assert convs[1].messages[0] == Message("system", "You are sftune.")
    text, _ = read("text.jsonl", system_prompt="You are sftune.")
    assert len(text[0].messages) == 1  # raw text and completions get no system message


def test_require_answer_false_accepts_prompts(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Say hi."}, {"instruction": "Say bye.", "output": ""}, {"instruction": "Hi", "output": "Yo"}])
    convs, report = read(p, require_answer=False)
    assert [msgs(c) for c in convs] == [
        [("user", "Say hi.", None)],
        [("user", "Say bye.", None)],
        [("user", "Hi", None), ("assistant", "Yo", None)],
    ]
    assert report.n_dropped == 0
    p = write_jsonl(tmp_path / "m.jsonl", [{"messages": [{"role": "user", "content": "Hi"}]}])
    assert msgs(read(p, require_answer=False)[0][0]) == [("user", "Hi", None)]
    _, strict = read(p)
    assert dict(strict.dropped) == {"conversation does not end with an assistant turn": 1}
    p = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "2 + 2 ="}, {"prompt": [{"role": "user", "content": "Hi"}]}])
    convs, _ = read(p, require_answer=False)
    assert convs[0].to_dict() == {"prompt": "2 + 2 =", "completion": ""}
    assert msgs(convs[1]) == [("user", "Hi", None)]


# ---- bad input ------------------------------------------------------------------------------------
MALFORMED_REASONS = {
    "malformed JSON": ["malformed.jsonl:2"],
    "row is not an object": ["malformed.jsonl:3"],
    "missing field 'messages'": ["malformed.jsonl:5"],
    "field 'messages' is not a list of messages": ["malformed.jsonl:6"],
    "empty answer": ["malformed.jsonl:7"],
    "unknown role 'bot' (known: system, developer, user, human, assistant, bing, chatgpt, gpt, model, tool, function, ipython, observation)": [
        "malformed.jsonl:9"
    ],
    "conversation does not end with an assistant turn": ["malformed.jsonl:10"],
    "no user turn": ["malformed.jsonl:11"],
    "not valid UTF-8": ["malformed.jsonl:12"],
    "field 'messages[].content' is not a string": ["malformed.jsonl:14"],
}


def test_malformed_file_exact_counts_and_lines():
    convs, report = read("malformed.jsonl")
    # 15 lines, one blank: 14 rows; 4 good ones, each kept in order; one bad row per reason.
    assert report.rows_in == 14
    assert [c.source.line for c in convs] == [1, 4, 13, 15]
    assert [c.messages[1].content for c in convs] == ["Hello.", "4", "你好!有什么可以帮你?", "Done."]
    assert report.n_dropped == 10
    assert dict(report.dropped) == {reason: 1 for reason in MALFORMED_REASONS}
    examples = {k: [Path(e).name for e in v] for k, v in report.examples.items()}
    assert examples == MALFORMED_REASONS
    assert "malformed.jsonl:12" in report.summary()


def test_alpaca_bad_rows():
    convs, report = read("alpaca_bad.jsonl")
    assert [c.source.line for c in convs] == [1, 7]
    assert dict(report.dropped) == {
        "missing field 'output'": 1,
        "field 'output' is not a string": 1,
        "empty answer": 1,
        "missing field 'instruction'": 1,
        "field 'history' is not a list of [user, assistant] pairs": 1,
    }
    assert [Path(report.examples["missing field 'instruction'"][0]).name] == ["alpaca_bad.jsonl:5"]


def test_strict_stops_at_the_first_bad_line_with_file_line_and_fix():
    with pytest.raises(DataError) as e:
        read("malformed.jsonl", DataReport(strict=True))
    msg = str(e.value)
    assert "malformed.jsonl:2: malformed JSON" in msg and "fix:" in msg
    assert e.value.source.line == 2
    with pytest.raises(DataError) as e:
        read("alpaca_bad.jsonl", DataReport(strict=True))
    assert "alpaca_bad.jsonl:2: missing field 'output'" in str(e.value)
    assert e.value.field == "output" and "fix:" in str(e.value)


def test_strict_unknown_role_lists_known_ones(tmp_path):
    p = write_jsonl(tmp_path / "r.jsonl", [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "robot", "value": "Yo"}]}])
    with pytest.raises(DataError) as e:
        read(p, DataReport(strict=True))
    msg = str(e.value)
    assert f"{p}:1: unknown role 'robot'" in msg and "gpt" in msg and "columns" in msg


def test_non_utf8_line_is_one_bad_row(tmp_path):
    p = tmp_path / "latin1.jsonl"
    p.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n{"text": "fine"}\n')
    convs, report = read(p)
    assert [c.messages[0].content for c in convs] == ["ok", "fine"]
    assert dict(report.dropped) == {"not valid UTF-8": 1}
    with pytest.raises(DataError, match=r"latin1.jsonl:2: not valid UTF-8\n  fix: .*0xe9 at column 14"):
        read(p, DataReport(strict=True))


@pytest.mark.parametrize(
    "row, reason",
    [
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}, {"role": "assistant", "content": "A cat."}]},
         "unsupported content part 'image_url'"),
        ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo", "weight": 0.5}]},
         "field 'messages[].weight' is not 0 or 1"),
        ({"messages": [{"content": "Hi"}, {"role": "assistant", "content": "Yo"}]}, "missing field 'messages[].role'"),
        ({"messages": [{"role": "user"}, {"role": "assistant", "content": "Yo"}]}, "missing field 'messages[].content'"),
        ({"messages": [{"role": "user", "content": "Hi"}, "Yo"]}, "field 'messages' is not a list of messages"),
        ({"messages": []}, "empty conversation"),
        ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}, {"role": "user", "content": "?"},
                       {"role": "assistant", "content": "Yo"}]}, "empty answer"),
    ],
)
def test_message_level_bad_rows(tmp_path, row, reason):
    p = write_jsonl(tmp_path / "b.jsonl", [row, {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "ok"}]}])
    convs, report = read(p, format="messages")
    assert len(convs) == 1 and convs[0].source.line == 2
    assert dict(report.dropped) == {reason: 1}


@pytest.mark.parametrize(
    "row, reason",
    [
        ({"text": ""}, "empty text"),
        ({"text": 3}, "field 'text' is not a string"),
        ({"prompt": "Hi", "completion": "  "}, "empty answer"),
        ({"prompt": 5, "completion": "x"}, "field 'prompt' is not a string or a list of messages"),
        ({"instruction": "", "output": "x"}, "empty instruction"),
    ],
)
def test_other_bad_rows(tmp_path, row, reason):
    fmt = "text" if "text" in row else ("alpaca" if "instruction" in row else "prompt_completion")
    p = write_jsonl(tmp_path / "b.jsonl", [row])
    convs, report = read(p, format=fmt)
    assert convs == [] and report.rows_in == 1 and dict(report.dropped) == {reason: 1}


def test_valid_rows_keep_input_order_across_many(tmp_path):
    rows = [{"text": f"row {i}"} if i % 7 else {"text": ""} for i in range(200)]
    convs, report = read(write_jsonl(tmp_path / "many.jsonl", rows))
    assert [c.messages[0].content for c in convs] == [r["text"] for r in rows if r["text"]]
    assert report.rows_in == 200 and dict(report.dropped) == {"empty text": 29}
    assert len(report.examples["empty text"]) == 5  # only the first few locations are kept
