"""Distillation and best-of-K on a tiny random model: deterministic, resumable, best = max score."""

from __future__ import annotations

import json

import pytest
from curate_helpers import chat, read_jsonl

from sftune.config import ConfigError
from sftune.curate.best_of_k import BestOfKOptions, RewardModel, best_index, best_of_k, callable_scorer
from sftune.curate.distill import DistillOptions, distill
from sftune.curate.io import CurateReport
from sftune.data.conversation import Conversation

PROMPTS = [
    chat("What is 2+2?", "4"),  # has an answer: it is replaced
    chat("Name a colour."),  # prompt only
    chat("Say hi.", system="You are terse."),
    Conversation.text("raw text rows have no prompt"),
    chat("Tell me a joke."),
    Conversation.completion("The capital of France is", " Paris."),
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from sftune.model.loading import load_for_inference

    return load_for_inference(str(tiny_model_dir), device="cpu")


def counting(monkeypatch):
    """Wrap generate_texts to count the prompts it is asked to answer."""
    from sftune.infer import generate

    calls: list[int] = []
    real = generate.generate_texts

    def wrapped(model, tok, convs, **kw):
        calls.append(len(convs))
        return real(model, tok, convs, **kw)

    monkeypatch.setattr(generate, "generate_texts", wrapped)
    return calls


def run_distill(tiny, out, convs=PROMPTS, **kw):
    model, tok = tiny
    report = CurateReport(command="distill")
    opts = DistillOptions(**{"max_new_tokens": 6, "keep_truncated": True, "batch_size": 2, **kw})
    n = distill(convs, model, tok, out, report, opts, teacher="tiny", progress=False)
    return n, report


def test_distill_writes_prompt_plus_teacher_answer(tiny, tmp_path):
    out = tmp_path / "d.jsonl"
    n, report = run_distill(tiny, out)
    rows = read_jsonl(out)
    assert n == len(rows) == 5 and dict(report.dropped) == {"no_prompt": 1}
    assert report.rows_in == 6 and report.kept == 5
    by_row = {r["meta"]["input_row"]: r for r in rows}
    assert sorted(by_row) == [0, 1, 2, 4, 5]
    r0 = by_row[0]
    assert [m["role"] for m in r0["messages"]] == ["user", "assistant"] and r0["messages"][0]["content"] == "What is 2+2?"
    assert r0["meta"]["teacher"] == "tiny" and r0["meta"]["finish_reason"] in ("stop", "length")
    assert [m["role"] for m in by_row[2]["messages"]] == ["system", "user", "assistant"]
    assert set(by_row[5]) == {"prompt", "completion", "meta"} and by_row[5]["prompt"] == "The capital of France is"
    # The answers are the model's greedy answers, exactly.
    from sftune.infer.generate import generate_texts

    model, tok = tiny
    ref = generate_texts(model, tok, [[{"role": "user", "content": "Name a colour."}]], max_new_tokens=6)
    assert by_row[1]["messages"][-1]["content"] == ref[0][0]["text"]


def test_distill_drops_and_counts_answers_cut_by_length(tiny, tmp_path):
    from sftune.infer.generate import generate_texts

    model, tok = tiny
    out = tmp_path / "d.jsonl"
    _, report = run_distill(tiny, out, keep_truncated=False, max_new_tokens=3)
    chats = [PROMPTS[i] for i in (0, 1, 2, 4)]
    ref = generate_texts(model, tok, [[{"role": m.role, "content": m.content} for m in c.messages if m.role != "assistant"] for c in chats], max_new_tokens=3)
    ref += generate_texts(model, tok, [PROMPTS[5]], max_new_tokens=3)
    cut = sum(r[0]["finish_reason"] == "length" for r in ref)
    assert report.dropped.get("cut_by_length", 0) == cut
    assert len(read_jsonl(out)) == 5 - cut
    assert all(r["meta"]["finish_reason"] == "stop" for r in read_jsonl(out))


def test_distill_resume_skips_done_rows_and_redoes_half_line(tiny, tmp_path, monkeypatch):
    full = tmp_path / "full.jsonl"
    run_distill(tiny, full)
    lines = full.read_text().splitlines(keepends=True)
    part = tmp_path / "part.jsonl"
    part.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])  # killed mid-write of row 3
    calls = counting(monkeypatch)
    n, report = run_distill(tiny, part)
    assert n == 3 and sum(calls) == 3  # only the 3 missing prompts were generated
    assert report.details["resumed_rows"] == 2 and any("half-written" in s for s in report.notes)
    assert part.read_text() == full.read_text()  # resume == uninterrupted
    calls.clear()
    n, _ = run_distill(tiny, part)  # everything done: nothing generated
    assert n == 0 and sum(calls) == 0


def test_distill_refuses_to_resume_from_other_input(tiny, tmp_path):
    out = tmp_path / "d.jsonl"
    run_distill(tiny, out, convs=PROMPTS[:2])
    with pytest.raises(ConfigError, match="different prompt"):
        run_distill(tiny, out, convs=[chat("Another question entirely?"), PROMPTS[1]])


def length_reward(prompt, answer):
    return float(len(answer))


def run_bok(tiny, out, scorer=None, convs=PROMPTS[:3], **kw):
    model, tok = tiny
    report = CurateReport(command="best-of-k")
    opts = BestOfKOptions(**{"k": 4, "max_new_tokens": 8, "keep_scores": True, "seed": 3, **kw})
    scorer = scorer or callable_scorer(length_reward, "length_reward")
    n = best_of_k(convs, model, tok, scorer, out, report, opts, policy="tiny", reward="len", progress=False)
    return n, report


def test_best_of_k_keeps_the_max_score(tiny, tmp_path):
    out = tmp_path / "b.jsonl"
    n, report = run_bok(tiny, out)
    rows = read_jsonl(out)
    assert n == len(rows) == 3
    for r in rows:
        cands = r["meta"]["candidates"]
        assert len(cands) == 4
        scores = [c["score"] for c in cands]
        assert scores == [float(len(c["text"])) for c in cands]
        b = r["meta"]["candidate"]
        assert r["meta"]["score"] == max(scores) and b == scores.index(max(scores))  # ties -> lowest index
        assert r["messages"][-1]["content"] == cands[b]["text"]
    assert len({c["text"] for c in rows[0]["meta"]["candidates"]}) > 1  # sampled, not 4 copies


def test_best_of_k_is_deterministic_and_ties_go_to_lowest_index(tiny, tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    run_bok(tiny, a)
    run_bok(tiny, b)
    assert a.read_text() == b.read_text()
    c = tmp_path / "c.jsonl"
    run_bok(tiny, c, scorer=callable_scorer(lambda p, ans: 1.0, "const"), keep_scores=False)
    for r in read_jsonl(c):
        assert r["meta"]["candidate"] == 0 and "candidates" not in r["meta"]
    assert best_index([0.5, 2.0, 2.0, float("nan")]) == 1


def test_best_of_k_candidates_do_not_depend_on_resume(tiny, tmp_path, monkeypatch):
    full = tmp_path / "full.jsonl"
    run_bok(tiny, full)
    part = tmp_path / "part.jsonl"
    part.write_text(full.read_text().splitlines(keepends=True)[0])
    calls = counting(monkeypatch)
    n, _ = run_bok(tiny, part)
    assert n == 2 and sum(calls) == 2
    assert part.read_text() == full.read_text()


def test_best_of_k_with_a_reward_model(tiny, tiny_reward_dir, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rm = RewardModel(str(tiny_reward_dir), device="cpu")
    prompt = [{"role": "user", "content": "Hi"}]
    scores = rm(prompt, ["Hello there!", "Go away", "Hello there!"])
    assert scores[0] == pytest.approx(scores[2], abs=1e-5) and scores[0] != scores[1]  # padding does not change a score
    tok = AutoTokenizer.from_pretrained(str(tiny_reward_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_reward_dir)).eval()
    text = tok.apply_chat_template(prompt + [{"role": "assistant", "content": "Go away"}], tokenize=False)
    with torch.no_grad():
        ref = model(**tok(text, return_tensors="pt")).logits[0, 0].item()
    assert scores[1] == pytest.approx(ref, abs=1e-4)
    out = tmp_path / "rm.jsonl"
    n, _ = run_bok(tiny, out, scorer=rm, convs=PROMPTS[:1])
    (row,) = read_jsonl(out)
    assert row["meta"]["score"] == max(c["score"] for c in row["meta"]["candidates"])


def test_best_of_k_option_errors(tmp_path):
    with pytest.raises(ConfigError, match="needs sampling"):
        BestOfKOptions(k=4, temperature=0)
    bad = callable_scorer(lambda p, a: "not a number", "bad:fn")
    with pytest.raises(ConfigError, match="must return a number"):
        bad([{"role": "user", "content": "x"}], ["y"])


def test_best_of_k_drop_truncated_skips_prompts_whose_candidates_are_all_cut(tiny, tmp_path, monkeypatch):
    # A random tiny model almost never says <|im_end|> within 3 tokens: every candidate is cut.
    out = tmp_path / "cut.jsonl"
    n, report = run_bok(tiny, out, convs=PROMPTS[:2], max_new_tokens=3, k=2)
    assert n == 2 and all(r["meta"]["finish_reason"] == "length" for r in read_jsonl(out))
    assert any("2 kept answers were cut" in note for note in report.notes)

    out = tmp_path / "dropped.jsonl"
    n, report = run_bok(tiny, out, convs=PROMPTS[:2], max_new_tokens=3, k=2, drop_truncated=True)
    assert n == 0 and read_jsonl(out) == [] and dict(report.dropped) == {"cut_by_length": 2}
    calls = counting(monkeypatch)
    n, report = run_bok(tiny, out, convs=PROMPTS[:2], max_new_tokens=3, k=2, drop_truncated=True)  # resumed
    assert n == 0 and calls == [] and report.dropped["cut_by_length"] == 2


@pytest.fixture()
def tiny_hermes(tiny):
    """The tiny model with a tokenizer whose chat template shows tools, calls and tool results."""
    import copy

    from sftune.data.templates import BUILTIN_TEMPLATES

    model, tok = tiny
    tok = copy.deepcopy(tok)
    tok.chat_template = BUILTIN_TEMPLATES["hermes"]
    return model, tok


def test_distill_and_best_of_k_keep_the_tool_context(tiny_hermes, tmp_path, monkeypatch):
    from curate_helpers import tool_chat

    from sftune.config import DataSource
    from sftune.data.readers import read_conversations
    from sftune.data.report import DataReport
    from sftune.infer import generate

    model, tok = tiny_hermes
    convs = [tool_chat("Oslo"), tool_chat("Lima", answer=False), chat("Plain question?")]
    asked = []
    real = generate.generate_texts
    monkeypatch.setattr(generate, "generate_texts", lambda m, t, cs, **kw: asked.extend(cs) or real(m, t, cs, **kw))

    def expected_prompt(c):  # what training renders before the answer: messages as the template gets them, with tools
        msgs = c.to_messages()[:-1] if c.messages[-1].role == "assistant" else c.to_messages()
        return tok.apply_chat_template(msgs, tools=c.tools, tokenize=False, add_generation_prompt=True)

    out = tmp_path / "d.jsonl"
    model_report = CurateReport(command="distill")
    distill(convs, model, tok, out, model_report, DistillOptions(max_new_tokens=4, keep_truncated=True), progress=False)
    prompts = [generate.render_prompt(tok, c) for c in asked]
    assert prompts == [expected_prompt(c) for c in convs]
    assert "<tools>" in prompts[0] and '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}' in prompts[0]
    assert "<tool_response>" in prompts[0] and "<think>\nTwo cities: two calls.\n</think>" in prompts[0]
    # the written rows keep the prompt's calls, results, reasoning and tools, and sftune reads them back so
    rows = read_jsonl(out)
    for r in rows:  # a random model's answers may be blank, which the reader drops: give each one
        r["messages"][-1]["content"] = "An answer."
    write = tmp_path / "answered.jsonl"
    write.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    reading = DataReport()
    back = read_conversations(DataSource(path=str(write)), reading)
    assert reading.n_dropped == 0 and len(back) == 3
    assert back[0].tools == convs[0].tools and back[2].tools is None
    assert [m.to_template() for m in back[0].messages[:-1]] == convs[0].to_messages()[:-1]
    assert [m.to_template() for m in back[1].messages[:-1]] == convs[1].to_messages()

    # best-of-K: the same prompts; the scorer sees the calls and, when it asks for them, the tools
    seen = []

    def reward(prompt, answer, tools=None):
        seen.append((prompt, tools))
        return float(len(answer))

    asked.clear()
    best_of_k(convs[:2], model, tok, callable_scorer(reward, "reward"), tmp_path / "b.jsonl", CurateReport(command="best-of-k"),
              BestOfKOptions(k=2, max_new_tokens=4), progress=False)
    assert [generate.render_prompt(tok, c) for c in asked] == [expected_prompt(c) for c in convs[:2]]
    assert seen[0] == (convs[0].to_messages()[:-1], convs[0].tools)
    rows = read_jsonl(tmp_path / "b.jsonl")
    assert rows[0]["tools"] == convs[0].tools and rows[0]["messages"][1]["tool_calls"] == convs[0].messages[1].tool_calls


def test_prompt_hash_of_plain_rows_is_unchanged_and_tool_rows_hash_their_calls():
    import hashlib

    from curate_helpers import tool_chat

    from sftune.curate.resumable import prompt_of, prompt_sha
    from sftune.data.conversation import Message

    plain = [Message("system", "S"), Message("user", "Hi")]
    old = hashlib.sha256(json.dumps([["system", "S"], ["user", "Hi"]]).encode()).hexdigest()[:16]
    assert prompt_sha(plain) == old  # outputs written before still resume
    a, b = tool_chat("Oslo"), tool_chat("Oslo")
    b.messages[1].tool_calls[0]["function"]["arguments"] = {"city": "Bergen"}
    assert prompt_sha(prompt_of(a), a.tools) != prompt_sha(prompt_of(b), b.tools)


def test_reward_model_reads_tool_prompts(tiny_reward_dir):
    from curate_helpers import tool_chat

    rm = RewardModel(str(tiny_reward_dir), device="cpu")
    conv = tool_chat("Oslo")
    prompt = conv.to_messages()[:-1]
    # SmolLM2's template has no tool role and needs content strings: the plain text keeps the calls
    text = rm.text(prompt, "3 °C.", conv.tools)
    assert '"arguments": {"city": "Oslo"}' in text and '{"temp_c": 18}' in text and text.endswith("3 °C.")
    assert len(rm(prompt, ["a", "b"], tools=conv.tools)) == 2


def test_teacher_tool_calls_are_written_as_tool_calls(tiny_hermes, tmp_path, monkeypatch):
    """A teacher that answers with a call: the written turn holds tool_calls (not markup in its text),
    rows without tools get the offered ones, and the template variables reach the template."""
    from curate_helpers import WEATHER, tool_chat

    from sftune.data.conversation import Message
    from sftune.infer import generate
    from sftune.infer.toolcalls import parse_output
    from sftune.infer.toolformat import resolve_format

    model, tok = tiny_hermes
    reply = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lima"}}\n</tool_call>'
    seen = []

    def teacher(m, t, convs, **kw):  # a model that calls the tool, read as generate_texts reads it
        seen.append(kw)
        out = []
        for c in convs:
            cand = {"text": reply, "prompt_tokens": len(generate.encode_prompt(t, c, template_kwargs=kw.get("template_kwargs"))),
                    "completion_tokens": 20, "finish_reason": "stop"}
            if kw.get("tool_format"):
                fmt = resolve_format(None if kw["tool_format"] == "auto" else kw["tool_format"], t.chat_template)
                cand["message"] = parse_output(reply, fmt).message()
            out.append([cand] * kw.get("num_return_sequences", 1))
        return out

    monkeypatch.setattr(generate, "generate_texts", teacher)
    plain = Conversation.chat([Message("user", "Weather in Lima?")])
    out = tmp_path / "d.jsonl"
    distill([tool_chat("Oslo", answer=False), plain], model, tok, out, CurateReport(command="distill"), DistillOptions(max_new_tokens=32),
            progress=False, tool_use={"tools": [WEATHER], "template_kwargs": {"enable_thinking": False}, "tool_format": None})
    assert seen[0]["tool_format"] == "auto" and seen[0]["template_kwargs"] == {"enable_thinking": False}
    rows = read_jsonl(out)
    for row in rows:
        last = row["messages"][-1]
        assert last["content"] is None and "<tool_call>" not in json.dumps(last)
        assert last["tool_calls"][0]["function"]["name"] == "get_weather"
        assert json.loads(last["tool_calls"][0]["function"]["arguments"]) == {"city": "Lima"}
        assert row["tools"] == [WEATHER]  # the plain row was offered the tools, and says so
    # best-of-K writes the winning candidate the same way; without a format the text is kept as produced
    best_of_k([plain], model, tok, callable_scorer(lambda p, a: 1.0, "one"), tmp_path / "b.jsonl", CurateReport(command="best-of-k"),
              BestOfKOptions(k=2, max_new_tokens=32), progress=False)
    (row,) = read_jsonl(tmp_path / "b.jsonl")
    assert row["messages"][-1] == {"role": "assistant", "content": reply} and "tools" not in row
