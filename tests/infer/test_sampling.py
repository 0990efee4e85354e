"""Sampling parameters change exactly the tokens they must: logit_bias, frequency/presence penalties, n."""

from __future__ import annotations

import pytest

from sftune.errors import ConfigError
from sftune.infer.generate import generate_texts, generation_kwargs

ASK = [{"role": "user", "content": "Say something about herons."}]


def _tokens(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_logit_bias_forces_and_bans_a_token(tiny):
    model, tok = tiny
    greedy = generate_texts(model, tok, [ASK], max_new_tokens=6)[0][0]["text"]
    first = _tokens(tok, greedy)[0]
    forced_id = next(i for i in range(100, 400) if i != first and i not in tok.all_special_ids)
    forced = generate_texts(model, tok, [ASK], max_new_tokens=6, logit_bias={forced_id: 100})[0][0]
    assert forced["text"] == tok.decode([forced_id] * 6) and forced["completion_tokens"] == 6
    banned = generate_texts(model, tok, [ASK], max_new_tokens=6, logit_bias={first: -100})[0][0]["text"]
    assert first not in _tokens(tok, banned) and banned != greedy


def test_frequency_penalty_stops_a_greedy_repetition(tiny):
    model, tok = tiny
    # logit_bias makes greedy repeat one token; a frequency penalty larger than the bias's lead breaks it.
    tid = 300
    plain = generate_texts(model, tok, [ASK], max_new_tokens=8, logit_bias={tid: 8})[0][0]
    reps = _tokens(tok, plain["text"]).count(tid)
    assert reps >= 6, plain
    penalised = generate_texts(model, tok, [ASK], max_new_tokens=8, logit_bias={tid: 8}, frequency_penalty=2.0, presence_penalty=2.0)[0][0]
    got = _tokens(tok, penalised["text"])
    assert got.count(tid) < reps
    # the penalties count answer tokens only (not the prompt): the first step is not penalised at all
    one = [generate_texts(model, tok, [ASK], max_new_tokens=1, logit_bias={tid: 8}, **kw)[0][0]["text"]
           for kw in ({}, {"frequency_penalty": 2.0, "presence_penalty": 2.0})]
    assert one[0] == one[1] and penalised["text"].startswith(one[0])


def test_penalties_off_change_nothing(tiny):
    model, tok = tiny
    a = generate_texts(model, tok, [ASK], max_new_tokens=8)[0][0]
    b = generate_texts(model, tok, [ASK], max_new_tokens=8, frequency_penalty=0.0, presence_penalty=0.0, logit_bias={})[0][0]
    assert a == b
    assert "logits_processor" not in generation_kwargs(model, tok)


def test_logit_bias_outside_the_vocabulary_is_refused(tiny):
    model, tok = tiny
    with pytest.raises(ConfigError, match="outside the model's vocabulary") as e:
        generation_kwargs(model, tok, logit_bias={10**7: 1})
    assert e.value.field == "logit_bias"
