"""Held-out loss: token-level, on trained tokens only, independent of batching and padding."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from sftune.config import DataSource, SFTConfig
from sftune.evaluate.heldout import _batches, heldout_loss, perplexity, prepare_rows, token_loss

@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(str(tiny_model_dir))


@pytest.fixture()
def heldout_file(tmp_path):
    rows = [
        {"instruction": "What is 2+2?", "output": "4"},
        {"instruction": "Name three colours.", "output": "Red, green and blue are three colours people often name first."},
        {"instruction": "Translate to Chinese", "input": "good morning", "output": "早上好"},
        {"instruction": "Write one long sentence about rivers.", "output": "Rivers carry water, sediment and life " * 6},
        {"instruction": "Say nothing useful.", "output": "OK."},
    ]
    p = tmp_path / "heldout.jsonl"
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return p


def by_hand(model, rows) -> tuple[float, int]:
    """One row at a time, no padding: summed CE over labels[1:] != -100, and the token count."""
    total, n = 0.0, 0
    for r in rows:
        ids = torch.tensor([r["input_ids"]])
        labels = torch.tensor(r["labels"][1:])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1]
        keep = labels != -100
        total += F.cross_entropy(logits[keep], labels[keep], reduction="sum").item()
        n += int(keep.sum())
    return total / n, n


def test_loss_matches_hand_computation_on_prepared_data(tiny, heldout_file):
    model, tok = tiny
    cfg = SFTConfig(model="x", max_length=256)
    src = [DataSource(path=str(heldout_file))]
    prep = prepare_rows(cfg, tok, src, use_cache=False)
    rows = [{"input_ids": i, "labels": l} for i, l in zip(prep.dataset["input_ids"], prep.dataset["labels"])]
    expected, n = by_hand(model, rows)
    # Only answer tokens are trained: far fewer than all tokens (the template's system prompt is long).
    assert 0 < n < sum(len(r["input_ids"]) for r in rows) // 2
    res = heldout_loss(model, tok, cfg, src, batch_size=3, prepared=prep)
    assert res.result.tokens == n and res.result.rows == 5 and res.sources == [str(heldout_file)]
    assert res.result.loss == pytest.approx(expected, abs=1e-5)
    assert res.result.perplexity == pytest.approx(math.exp(expected), rel=1e-5)
    assert res.report["kept"] == 5


def test_batch_size_and_padding_do_not_change_the_loss(tiny, heldout_file):
    model, tok = tiny
    prep = prepare_rows(SFTConfig(model="x", max_length=256), tok, [DataSource(path=str(heldout_file))], use_cache=False)
    results = [
        token_loss(model, prep.dataset, pad_token_id=pad, batch_size=bs, max_batch_tokens=mbt)
        for pad, bs, mbt in [(2, 1, 10**6), (2, 2, 10**6), (0, 5, 10**6), (17, 8, 10**6), (2, 8, 150)]
    ]
    assert len({r.tokens for r in results}) == 1
    for r in results[1:]:
        assert r.loss == pytest.approx(results[0].loss, abs=1e-5)


def test_token_mean_is_not_a_mean_of_row_means(tiny):
    model, _ = tiny
    # Row a trains 1 token, row b trains 5: the token-level mean weights b five times as much.
    a = {"input_ids": [1, 100, 200, 300], "labels": [-100, -100, -100, 300]}
    b = {"input_ids": [1, 5, 6, 7, 8, 9, 10], "labels": [-100, -100, 6, 7, 8, 9, 10]}
    la, lb = token_loss(model, [a]).loss, token_loss(model, [b]).loss
    both = token_loss(model, [a, b], batch_size=2)
    assert both.tokens == 6
    assert both.loss == pytest.approx((la * 1 + lb * 5) / 6, abs=1e-5)
    # And equals the model's own loss for one row (transformers shifts labels the same way).
    with torch.no_grad():
        own = model(input_ids=torch.tensor([b["input_ids"]]), labels=torch.tensor([b["labels"]])).loss.item()
    assert lb == pytest.approx(own, abs=1e-5)


def test_label_at_position_zero_is_not_counted(tiny):
    model, _ = tiny
    res = token_loss(model, [{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}])
    assert res.tokens == 2


def test_no_trained_tokens_is_an_error(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match="no trained tokens"):
        token_loss(model, [{"input_ids": [5, 6], "labels": [-100, -100]}])


def test_batches_bound_rows_and_tokens():
    assert _batches([5, 5, 5], batch_size=2, max_batch_tokens=100) == [[0, 1], [2]]
    assert _batches([50, 1], batch_size=8, max_batch_tokens=10) == [[0], [1]]  # an oversize row still runs alone
    assert sorted(i for b in _batches(list(range(1, 30)), 4, 40) for i in b) == list(range(29))


def test_perplexity_overflow():
    assert perplexity(0.0) == 1.0 and perplexity(1e6) == float("inf")
