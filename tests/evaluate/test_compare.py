"""Questions from any format, the recorded base, and base/fine-tuned answers from the right models."""

from __future__ import annotations

import json

import pytest

from sftune.config import DataSource
from sftune.evaluate.compare import DEFAULT_QUESTIONS, Question, answer, evaluate, load_questions, recorded_base
from sftune.evaluate.heldout import token_loss


def test_bundled_questions_by_group():
    qs, report = load_questions()
    groups = json.loads(DEFAULT_QUESTIONS.read_text(encoding="utf-8"))
    assert report is None
    assert [q.question for q in qs] == groups["identity"] + groups["general"]
    assert [q.group for q in qs] == ["identity"] * len(groups["identity"]) + ["general"] * len(groups["general"])
    assert qs[0].prompt == [{"role": "user", "content": groups["identity"][0]}] and qs[0].reference is None


def test_questions_from_any_format(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "And 1+1?"}]},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of Italy?"}, {"role": "assistant", "content": "Rome"}]},
    ]
    p = tmp_path / "m.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    qs, report = load_questions(p)
    # A prompt-only multi-turn row keeps its whole history, last user turn included.
    assert qs[0].prompt[-1] == {"role": "user", "content": "And 1+1?"} and len(qs[0].prompt) == 3
    assert qs[0].question == "And 1+1?" and qs[0].reference is None
    assert qs[1].prompt == rows[1]["messages"][:2] and qs[1].reference == "Rome"
    assert qs[0].source == f"{p}:1" and report["dropped"] == 1

    pc = tmp_path / "pc.jsonl"
    pc.write_text(json.dumps({"prompt": "2+2=", "completion": "4"}) + "\n" + json.dumps({"prompt": "3+3="}) + "\n")
    qs, _ = load_questions(pc)
    assert [(q.question, q.reference) for q in qs] == [("2+2=", "4"), ("3+3=", None)]
    assert qs[0].prompt.kind == "completion"  # asked as a raw prompt, no chat template

    txt = tmp_path / "q.txt"
    txt.write_text("First question?\n\n  Second one  \n", encoding="utf-8")
    qs, _ = load_questions(txt, system_prompt="S")
    assert [q.prompt for q in qs] == [
        [{"role": "system", "content": "S"}, {"role": "user", "content": "First question?"}],
        [{"role": "system", "content": "S"}, {"role": "user", "content": "Second one"}],
    ]
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_questions(tmp_path / "nope.jsonl")


def test_recorded_base(tuned_model_dir, adapter_dir, tiny_model_dir, tmp_path):
    import shutil

    assert recorded_base(tuned_model_dir) == str(tiny_model_dir)
    assert recorded_base(adapter_dir) == str(tiny_model_dir)
    assert recorded_base(tiny_model_dir) is None  # a plain model folder records no base
    bare = shutil.copytree(adapter_dir, tmp_path / "bare")
    (bare / "sftune_config.yaml").unlink()
    assert recorded_base(bare) == str(tiny_model_dir)  # peft's base_model_name_or_path


def _plain(path):
    from sftune.model.loading import load_for_inference

    return load_for_inference(str(path), device="cpu")


def test_adapter_base_side_is_the_base_model(adapter_dir, tiny_model_dir, qa_file):
    """With the adapter switched off, answers and losses are exactly the base model's."""
    res = evaluate(str(adapter_dir), data=[DataSource(path=str(qa_file))], questions=qa_file, forgetting=False,
                   max_new_tokens=5, use_cache=False, device="cpu")
    assert res.adapter and res.base == str(tiny_model_dir)
    qs, _ = load_questions(qa_file)
    base_model, tok = _plain(tiny_model_dir)
    assert [q["base"]["text"] for q in res.questions] == [a["text"] for a in answer(base_model, tok, qs, max_new_tokens=5)]
    tuned, tok2 = _plain(adapter_dir)
    assert [q["fine_tuned"]["text"] for q in res.questions] == [a["text"] for a in answer(tuned, tok2, qs, max_new_tokens=5)]
    from sftune.evaluate.compare import run_config
    from sftune.evaluate.heldout import prepare_rows

    prep = prepare_rows(run_config(str(adapter_dir)), tok, [DataSource(path=str(qa_file))], use_cache=False)
    assert res.heldout["base"]["loss"] == pytest.approx(token_loss(base_model, prep.dataset, pad_token_id=tok.pad_token_id).loss, abs=1e-5)
    assert res.heldout["fine_tuned"]["loss"] == pytest.approx(token_loss(tuned, prep.dataset, pad_token_id=tok.pad_token_id).loss, abs=1e-5)
    assert res.heldout["base"]["loss"] != pytest.approx(res.heldout["fine_tuned"]["loss"], abs=1e-4)


def test_explicit_base_is_loaded_separately(adapter_dir, tuned_model_dir, qa_file):
    res = evaluate(str(adapter_dir), base=str(tuned_model_dir), questions=qa_file, forgetting=False, max_new_tokens=5, device="cpu")
    assert res.base == str(tuned_model_dir)
    model, tok = _plain(tuned_model_dir)
    qs, _ = load_questions(qa_file)
    assert [q["base"]["text"] for q in res.questions] == [a["text"] for a in answer(model, tok, qs, max_new_tokens=5)]
    # References are scored on both sides.
    assert set(res.questions[0]["base"]["scores"]) == {"exact_match", "contains", "f1", "rouge_l"}
    assert res.scores["base"]["n"] == res.scores["fine_tuned"]["n"] == 3


def test_question_from_conversation_text_kind():
    from sftune.data.conversation import Conversation

    q = Question.from_conversation(Conversation.text("Once upon a time"))
    assert q.question == "Once upon a time" and q.reference is None and q.prompt.kind == "completion"


def test_base_with_another_vocabulary_is_refused(tuned_model_dir, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from sftune.model.loading import ModelLoadError

    other = tmp_path / "other"
    LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(other)
    with pytest.raises(ModelLoadError, match="do not share a vocabulary"):
        evaluate(str(tuned_model_dir), base=str(other), ask=False, forgetting=False, device="cpu")


TOOL_FIXTURE = __import__("pathlib").Path(__file__).resolve().parent.parent / "data" / "fixtures" / "tool_messages.jsonl"


def test_questions_from_tool_data_keep_calls_results_reasoning_and_tools():
    from sftune.data.readers import read_conversations
    from sftune.data.report import DataReport

    qs, report = load_questions(TOOL_FIXTURE)
    convs = read_conversations(DataSource(path=str(TOOL_FIXTURE)), DataReport(), require_answer=False)
    assert len(qs) == len(convs) == report["kept"] >= 3
    for q, c in zip(qs, convs):  # the prompt is exactly what training gives the template before the answer
        assert q.prompt == c.to_messages()[:-1] and q.tools == c.tools
    q = qs[1]  # two calls, their results and reasoning before the final answer
    assert q.tools[0]["function"]["name"] == "get_weather" and q.reference == "Rome 18 °C, Oslo 3 °C."
    assert [m["tool_calls"][0]["function"]["name"] for m in q.prompt if "tool_calls" in m] == ["get_time", "get_weather"]
    assert any(m["role"] == "tool" and m.get("tool_call_id") == "call00003b" for m in q.prompt)
    assert q.prompt[1]["reasoning_content"] == "I should call get_time." and q.question == "And the weather in Rome and Oslo?"


def test_answer_gives_each_question_its_tools(tiny_model_dir, monkeypatch):
    from sftune.data.templates import BUILTIN_TEMPLATES
    from sftune.infer import generate

    model, tok = _plain(tiny_model_dir)
    tok.chat_template = BUILTIN_TEMPLATES["hermes"]
    qs, _ = load_questions(TOOL_FIXTURE)
    plain = Question([{"role": "user", "content": "Hi"}], "Hi")
    qs = [qs[0], plain, qs[2], qs[1]]
    prompts = []
    real = generate.generate_texts

    def recording(m, t, convs, tools=None, **kw):
        prompts.extend(generate.render_prompt(t, c, tools=tools) for c in convs)
        return real(m, t, convs, tools=tools, **kw)

    monkeypatch.setattr(generate, "generate_texts", recording)
    got = answer(model, tok, qs, max_new_tokens=3)
    assert len(got) == 4
    want = [tok.apply_chat_template(q.prompt, tools=q.tools, tokenize=False, add_generation_prompt=True) for q in qs]
    assert sorted(prompts) == sorted(want)
    assert sum("<tools>" in p for p in prompts) == 2 and sum("<tool_call>" in p for p in prompts) == 2
    monkeypatch.setattr(generate, "generate_texts", real)
    # each answer is the one its question gets when asked alone
    assert [a["text"] for a in got] == [answer(model, tok, [q], max_new_tokens=3)[0]["text"] for q in qs]
