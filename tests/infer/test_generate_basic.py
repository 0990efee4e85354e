"""generate_texts: order, batching and padding must not change the answers."""

from __future__ import annotations

from sftune.data.conversation import Conversation, Message
from sftune.infer.generate import generate_texts


def test_batched_greedy_equals_one_by_one(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    convs = [
        [{"role": "user", "content": "Hi"}],
        [{"role": "user", "content": "A much longer question that makes the prompts differ in length a lot"}],
        Conversation.chat([Message("user", "Third"), Message("assistant", "ignored answer")]),
    ]
    batched = generate_texts(model, tok, convs, max_new_tokens=6, batch_size=3)
    single = [generate_texts(model, tok, [c], max_new_tokens=6, batch_size=1)[0] for c in convs]
    assert [b[0]["text"] for b in batched] == [s[0]["text"] for s in single]
    assert batched[1][0]["prompt_tokens"] > batched[0][0]["prompt_tokens"]
    for r in batched:
        assert r[0]["finish_reason"] in ("stop", "length") and r[0]["completion_tokens"] <= 6


def test_sampling_returns_k_candidates(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    out = generate_texts(model, tok, [[{"role": "user", "content": "Hi"}]], max_new_tokens=5, temperature=1.0,
                         num_return_sequences=3, seed=0)
    assert len(out) == 1 and len(out[0]) == 3
    again = generate_texts(model, tok, [[{"role": "user", "content": "Hi"}]], max_new_tokens=5, temperature=1.0,
                           num_return_sequences=3, seed=0)
    assert [a["text"] for a in out[0]] == [a["text"] for a in again[0]]
