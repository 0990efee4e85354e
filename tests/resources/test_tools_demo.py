"""The bundled tool-use demo (``tools_demo.jsonl``, ``tools_demo_tools.json``, ``demos/tools.yaml``).

Every call must be well formed and answered, every answer must use its tool result, the file must
be what the committed generator writes, and the demo's eval questions must ask about cities the
training rows never mention: a broken row here would teach the demo model a broken call.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from sftune.infer.toolrequest import template_messages
from sftune.infer.toolcalls import parse_output
from sftune.infer.toolformat import BUILTIN_FORMATS

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = ROOT / "src" / "sftune" / "resources"
CJK = re.compile(r"[\u4e00-\u9fff]")


def load_script():
    spec = importlib.util.spec_from_file_location("make_tools_demo", ROOT / "scripts" / "make_tools_demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    out = []
    for n, line in enumerate((RESOURCES / "tools_demo.jsonl").read_text(encoding="utf-8").splitlines(), 1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            pytest.fail(f"tools_demo.jsonl:{n}: not valid JSON: {e}")
    return out


@pytest.fixture(scope="module")
def tools() -> list[dict]:
    return json.loads((RESOURCES / "tools_demo_tools.json").read_text(encoding="utf-8"))


def test_files_are_what_the_generator_writes(tmp_path):
    data, tools_file = load_script().write(tmp_path)
    assert data.read_bytes() == (RESOURCES / "tools_demo.jsonl").read_bytes(), "rerun scripts/make_tools_demo.py"
    assert tools_file.read_bytes() == (RESOURCES / "tools_demo_tools.json").read_bytes()


def test_tool_schema(tools):
    assert [t["function"]["name"] for t in tools] == ["get_weather"]
    params = tools[0]["function"]["parameters"]
    assert params["required"] == ["city"] and params["properties"]["unit"]["enum"] == ["celsius", "fahrenheit"]


def test_every_call_is_well_formed_answered_and_used(rows, tools):
    kinds = {"single": 0, "parallel": 0, "follow_up": 0, "direct": 0}
    for n, row in enumerate(rows, 1):
        where = f"tools_demo.jsonl:{n}"
        assert set(row) == {"messages", "tools"} and row["tools"] == tools, where
        msgs = row["messages"]
        assert msgs[0]["role"] == "user" and msgs[-1]["role"] == "assistant" and msgs[-1]["content"], where
        open_calls: list[dict] = []
        results: list[dict] = []
        turns = 0
        for m in msgs:
            if m["role"] == "user":
                assert not open_calls, f"{where}: a user turn before every call was answered"
                zh = bool(CJK.search(m["content"]))
                asks_f = any(s in m["content"] for s in ("Fahrenheit", "°F", "华氏"))
            elif m["role"] == "assistant" and m.get("tool_calls"):
                turns += 1
                assert m["content"] is None and set(m) == {"role", "content", "tool_calls"}, where
                for c in m["tool_calls"]:
                    assert c["type"] == "function" and c["function"]["name"] == "get_weather", where
                    assert re.fullmatch(r"call_[0-9a-f]{12}", c["id"]), where
                    args = json.loads(c["function"]["arguments"])  # a JSON string, as OpenAI sends it
                    assert set(args) == {"city", "unit"} and args["city"].strip(), where
                    assert args["unit"] == ("fahrenheit" if asks_f else "celsius"), f"{where}: unit does not follow the question"
                open_calls = list(m["tool_calls"])
                results = []
            elif m["role"] == "tool":
                call = open_calls.pop(0)  # results come in the order of the calls
                assert m["tool_call_id"] == call["id"] and m["name"] == "get_weather", where
                res = json.loads(m["content"])
                assert res["city"] == json.loads(call["function"]["arguments"])["city"], where
                results.append(res)
            else:  # the answer
                assert not open_calls, f"{where}: answered before every result came back"
                assert bool(CJK.search(m["content"])) == zh, f"{where}: answer language differs from the question's"
                for res in results:  # the answer uses what the tool said
                    assert str(res["temperature"]) in m["content"] and res["city"] in m["content"], where
                results = []
        n_calls = max((len(m.get("tool_calls") or []) for m in msgs), default=0)
        kind = "direct" if not turns else "follow_up" if turns > 1 else "parallel" if n_calls > 1 else "single"
        kinds[kind] += 1
    print(kinds)
    assert 150 <= len(rows) <= 300
    assert kinds["single"] >= 100 and kinds["parallel"] >= 15 and kinds["follow_up"] >= 6 and kinds["direct"] >= 40


def test_both_languages_and_no_repeated_prompts(rows):
    prompts = [tuple(m["content"] for m in r["messages"] if m["role"] == "user") for r in rows]
    assert len(set(prompts)) == len(prompts)
    zh = sum(bool(CJK.search(p[0])) for p in prompts)
    assert 0.3 <= zh / len(rows) <= 0.6, f"{zh} of {len(rows)} rows are Chinese"


def test_demo_config_and_held_out_eval(rows):
    from sftune.train.demos import demo_config

    cfg = demo_config("tools")
    assert Path(cfg.data[0].path) == RESOURCES / "tools_demo.jsonl" and cfg.template == "hermes"
    assert cfg.max_steps > 0 and cfg.method == "lora"
    held_out = load_script().HELD_OUT_CITIES
    text = json.dumps(rows, ensure_ascii=False)
    assert not [c for c in held_out if c in text], "a held-out city appears in the training rows"
    asked = [q for q in cfg.eval_questions if any(c in q for c in held_out)]
    assert len(asked) >= 2 and any(CJK.search(q) for q in asked)
    prompts = {m["content"] for r in rows for m in r["messages"] if m["role"] == "user"}
    assert not set(cfg.eval_questions) & prompts
    # Overriding the data keeps the given path.
    assert demo_config("tools", {"data": ["mine.jsonl"]}).data[0].path == "mine.jsonl"


# A compact Hermes-style template (tools in the system turn, calls as <tool_call> JSON): enough to
# check that every row renders with its calls as JSON objects and to size the demo in tokens.
HERMES_LIKE = (
    "{% if tools %}<|im_start|>system\nYou may call functions. Signatures:\n<tools>\n"
    "{% for t in tools %}{{ t | tojson }}\n{% endfor %}</tools>\n"
    "Answer a call with <tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n{% endif %}"
    "{% for m in messages %}"
    "{% if m.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ m.content }}\n</tool_response><|im_end|>\n"
    "{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}"
    "{% for tc in m.tool_calls or [] %}<tool_call>\n{{ {'name': tc.function.name, 'arguments': tc.function.arguments} | tojson }}\n</tool_call>{% endfor %}"
    "<|im_end|>\n{% endif %}{% endfor %}"
)


def test_rows_render_and_read_back_as_calls(rows, smol_tokenizer):
    total = longest = 0
    for n, row in enumerate(rows, 1):
        msgs = template_messages(row["messages"])  # the request-side normaliser: arguments become objects
        text = smol_tokenizer.apply_chat_template(msgs, tools=row["tools"], chat_template=HERMES_LIKE, tokenize=False)
        ids = smol_tokenizer(text, add_special_tokens=False)["input_ids"]
        total, longest = total + len(ids), max(longest, len(ids))
        # Each calling turn, as rendered, parses back into exactly the calls the row holds.
        for m in row["messages"]:
            if m.get("tool_calls"):
                rendered = "".join("<tool_call>\n" + json.dumps({"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])},
                                                                ensure_ascii=False) + "\n</tool_call>" for c in m["tool_calls"])
                assert rendered in text, f"tools_demo.jsonl:{n}"
                got = parse_output(rendered, BUILTIN_FORMATS["hermes"])
                assert [c["function"] for c in got.tool_calls] == [c["function"] for c in m["tool_calls"]], f"tools_demo.jsonl:{n}"
    print(f"tools_demo.jsonl: {total} tokens with a Hermes-style template, longest row {longest}")
    assert longest < 1024 and total < 120_000


def test_rows_read_by_sftune_with_nothing_dropped(rows):
    from sftune.config import DataSource
    from sftune.data import readers
    from sftune.data.report import DataReport

    report = DataReport(strict=True)
    convs = list(readers.read_conversations(DataSource(path=str(RESOURCES / "tools_demo.jsonl")), report))
    assert len(convs) == len(rows) and report.n_dropped == 0


@pytest.mark.parametrize("name", ["hermes", "qwen3"])
def test_every_demo_turn_reads_back_through_the_builtin_tool_templates(rows, smol_tokenizer, name):
    """Each assistant turn, rendered by sftune's built-in tool template as the continuation of its
    prompt (what the model learns to generate), parses back into exactly its calls and text."""
    from sftune.data.templates import BUILTIN_TEMPLATES
    from sftune.infer.toolformat import detect_format
    from sftune.infer.toolrequest import prepare_tool_request, start_reply

    tok = smol_tokenizer
    saved, tok.chat_template = tok.chat_template, BUILTIN_TEMPLATES[name]
    try:
        fmt = detect_format(tok.chat_template)
        assert fmt is not None and fmt.call_start == "<tool_call>" and fmt.reasoning_start == "<think>"
        n = 0
        for i, row in enumerate(rows, 1):
            msgs = template_messages(row["messages"])
            for k, m in enumerate(msgs):
                if m["role"] != "assistant":
                    continue
                prompt = tok.apply_chat_template(msgs[:k], tools=row["tools"], tokenize=False, add_generation_prompt=True)
                full = tok.apply_chat_template(msgs[:k + 1], tools=row["tools"], tokenize=False)
                assert full.startswith(prompt), f"tools_demo.jsonl:{i}"
                generated = full[len(prompt):].rstrip("\n").removesuffix("<|im_end|>")
                got = parse_output(generated, fmt)
                want = row["messages"][k]
                assert [c["function"] for c in got.tool_calls] == [c["function"] for c in want.get("tool_calls") or []], f"tools_demo.jsonl:{i}"
                assert (got.content or None) == (want["content"] or None) and not got.problems, f"tools_demo.jsonl:{i}"
                n += 1
        assert n == sum(m["role"] == "assistant" for r in rows for m in r["messages"])
        # A forced call starts exactly as the template writes calls.
        req = prepare_tool_request([{"role": "user", "content": "Madrid?"}], rows[0]["tools"],
                                   {"type": "function", "function": {"name": "get_weather"}}, fmt)
        text, _ = start_reply(tok, req)
        assert text.endswith('<|im_start|>assistant\n\n<tool_call>\n{"name": "get_weather", "arguments": ')
    finally:
        tok.chat_template = saved
