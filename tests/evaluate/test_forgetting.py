"""The forgetting check: general-text perplexity of base and fine-tuned models, relative change, warning."""

from __future__ import annotations

import json

import pytest
import torch

from sftune.config import SFTConfig
from sftune.evaluate.forgetting import DEFAULT_GENERAL_TEXT, Forgetting, general_perplexity, prepare_general_text, relative_change
from sftune.evaluate.heldout import LossResult, token_loss


def lr(ppl: float) -> LossResult:
    import math

    return LossResult(loss=math.log(ppl), perplexity=ppl, tokens=100, rows=3)


def test_relative_change_and_warning():
    assert relative_change(20.0, 25.0) == pytest.approx(0.25)
    ok = Forgetting("g.jsonl", lr(20.0), lr(21.0), threshold=0.10)
    assert ok.relative_change == pytest.approx(0.05) and ok.warning is None
    bad = Forgetting("g.jsonl", lr(20.0), lr(25.0), threshold=0.10)
    assert "+25.0%" in bad.warning and "20.00 -> 25.00" in bad.warning and "replay" in bad.warning
    better = Forgetting("g.jsonl", lr(20.0), lr(10.0))
    assert better.relative_change == pytest.approx(-0.5) and better.warning is None
    d = bad.to_dict()
    assert list(d) == ["data", "base", "fine_tuned", "relative_change", "threshold", "warning"]
    assert d["base"]["perplexity"] == 20.0 and d["relative_change"] == pytest.approx(0.25)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(str(tiny_model_dir))


def test_bundled_text_every_token_scored(tiny):
    model, tok = tiny
    prep = prepare_general_text(SFTConfig(model="x"), tok, use_cache=False)
    n_rows = sum(1 for line in DEFAULT_GENERAL_TEXT.read_text(encoding="utf-8").splitlines() if line.strip())
    assert len(prep.dataset) == n_rows
    res = general_perplexity(model, tok, prep)
    # Raw text is trained on every token (EOS appended); only position 0 has no prediction.
    assert res.tokens == sum(len(ids) - 1 for ids in prep.dataset["input_ids"])
    # A random model over a 49k vocabulary: perplexity is in the tens of thousands.
    assert 1e3 < res.perplexity < 1e6
    # Same model before and after: no change, no warning.
    f = Forgetting(str(DEFAULT_GENERAL_TEXT), res, res)
    assert f.relative_change == 0.0 and f.warning is None


def test_chat_rows_as_general_text_score_the_whole_conversation(tiny, tmp_path):
    model, tok = tiny
    p = tmp_path / "chat.jsonl"
    p.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}) + "\n")
    cfg = SFTConfig(model="x", mask="assistant", system_prompt="ignored for general text")
    prep = prepare_general_text(cfg, tok, p, use_cache=False)
    ids, labels = prep.dataset[0]["input_ids"], prep.dataset[0]["labels"]
    assert labels == ids  # mask 'all'
    assert "ignored for general text" not in tok.decode(ids)
    assert token_loss(model, prep.dataset).tokens == len(ids) - 1
