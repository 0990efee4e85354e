"""Distillation and best-of-K on a tiny random model: deterministic, resumable, best = max score."""

from __future__ import annotations


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
