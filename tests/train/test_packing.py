"""Packing: best-fit-decreasing bins, and packed = unpacked (loss, gradients, no cross-talk)."""

from __future__ import annotations

import random

import pytest
import torch

from sftune.data.packing import PackingCollator, pack, pack_rows
from sftune.data.tokenize import IGNORE_INDEX

ATOL = 1e-5  # float32; packed and unpacked differ only by summation order


def make_rows(n=7, seed=0, lo=3, hi=40, vocab=1000):
    rnd = random.Random(seed)
    rows = []
    for _ in range(n):
        k = rnd.randint(lo, hi)
        ids = [rnd.randrange(3, vocab) for _ in range(k)]
        prompt = rnd.randint(1, k - 1)
        rows.append({"input_ids": ids, "labels": [IGNORE_INDEX] * prompt + ids[prompt:]})
    return rows


def test_bins_respect_max_length_and_use_every_sample_once():
    rows = make_rows(200, hi=120)
    bins = pack_rows(rows, max_length=256)
    assert sorted(i for b in bins for i in b) == list(range(200))
    assert all(sum(len(rows[i]["input_ids"]) for i in b) <= 256 for b in bins)
    total = sum(len(r["input_ids"]) for r in rows)
    # best-fit-decreasing on these lengths fills rows almost completely
    assert len(bins) <= total // 256 + 2


def test_too_long_sample_is_an_error_that_names_it():
    with pytest.raises(ValueError, match="sample 1 has 9 tokens, more than max_length=8"):
        pack_rows([{"input_ids": [1] * 3}, {"input_ids": [1] * 9}], max_length=8)


def test_pack_keeps_every_token():
    from datasets import Dataset

    rows = make_rows(30)
    ds = Dataset.from_list(rows)
    packed = pack(ds, max_length=64)
    assert sum(len(x) for x in packed["input_ids"]) == sum(len(r["input_ids"]) for r in rows)
    assert sum(sum(s) for s in packed["seq_lengths"]) == sum(len(r["input_ids"]) for r in rows)
    assert sorted(map(tuple, (r["input_ids"] for r in rows))) == sorted(
        tuple(ids[s : s + n]) for ids, lens in zip(packed["input_ids"], packed["seq_lengths"]) for s, n in _starts(lens)
    )


def _starts(lens):
    s = 0
    for n in lens:
        yield s, n
        s += n


def test_trained_token_count_equals_unpacked():
    rows = make_rows(12)
    unpacked = sum(sum(1 for t in r["labels"][1:] if t != IGNORE_INDEX) for r in rows)
    bins = pack_rows(rows, 80)
    batch = PackingCollator(pad_token_id=0)([[rows[i] for i in b] for b in bins])
    assert int((batch["labels"][:, 1:] != IGNORE_INDEX).sum()) == unpacked
    assert "attention_mask" not in batch  # transformers only detects packed rows without a 2D mask


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def tiny(request, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32, attn_implementation=request.param)


def _loss_and_grads(model, batches, n_items):
    model.zero_grad()
    total = 0.0
    for b in batches:
        # use_cache=False: with a cache, transformers does not look for packed rows in position_ids
        loss = model(**b, num_items_in_batch=n_items, use_cache=False).loss
        loss.backward()
        total += loss.item()
    return total, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_packed_loss_and_gradients_equal_unpacked(tiny):
    rows = make_rows(9, seed=1)
    n_items = sum(sum(1 for t in r["labels"][1:] if t != IGNORE_INDEX) for r in rows)
    single = [
        {"input_ids": torch.tensor([r["input_ids"]]), "labels": torch.tensor([r["labels"]])} for r in rows
    ]  # one sample per forward: no padding, no packing
    loss_u, grads_u = _loss_and_grads(tiny, single, n_items)
    bins = pack_rows(rows, 96)
    assert len(bins) > 1 and any(len(b) > 1 for b in bins)  # several rows, several samples per row
    packed = PackingCollator(pad_token_id=0)([[rows[i] for i in b] for b in bins])
    loss_p, grads_p = _loss_and_grads(tiny, [packed], n_items)
    assert loss_p == pytest.approx(loss_u, abs=ATOL)
    assert grads_p.keys() == grads_u.keys()
    for name in grads_u:
        torch.testing.assert_close(grads_p[name], grads_u[name], atol=ATOL, rtol=1e-4, msg=name)


def test_no_attention_across_samples(tiny):
    rows = make_rows(3, seed=2, lo=10, hi=20)
    coll = PackingCollator(pad_token_id=0)
    a, b, c = rows
    base = coll([[a, b, c]])
    changed_a = {"input_ids": [t + 1 for t in a["input_ids"]], "labels": a["labels"]}
    other = coll([[changed_a, b, c]])
    with torch.no_grad():
        l1 = tiny(input_ids=base["input_ids"], position_ids=base["position_ids"], use_cache=False).logits
        l2 = tiny(input_ids=other["input_ids"], position_ids=other["position_ids"], use_cache=False).logits
        alone = tiny(input_ids=torch.tensor([b["input_ids"]]), use_cache=False).logits
    na, nb = len(a["input_ids"]), len(b["input_ids"])
    assert not torch.allclose(l1[0, :na], l2[0, :na])  # sample A did change
    torch.testing.assert_close(l1[0, na:], l2[0, na:], atol=ATOL, rtol=0)  # B and C did not
    torch.testing.assert_close(l1[0, na : na + nb], alone[0], atol=ATOL, rtol=1e-5)  # B as if alone


def test_pack_is_a_cached_data_step_for_a_dataset_on_disk(tmp_path):
    from datasets import Dataset, load_from_disk

    from sftune.data.packing import pack_stats

    rows = make_rows(40, seed=3)
    Dataset.from_list([{**r, "source": f"f.jsonl:{i + 1}"} for i, r in enumerate(rows)]).save_to_disk(str(tmp_path / "ds"))
    first = pack(load_from_disk(str(tmp_path / "ds")), max_length=64, seed=5)
    again = pack(load_from_disk(str(tmp_path / "ds")), max_length=64, seed=5)
    assert first.column_names == ["input_ids", "labels", "seq_lengths"]  # source is for reports only
    # the second run reads the first one's result, written next to the dataset
    assert again.cache_files == first.cache_files and str(tmp_path / "ds") in again.cache_files[0]["filename"]
    assert again["input_ids"] == first["input_ids"] and again["seq_lengths"] == first["seq_lengths"]
    other_seed = pack(load_from_disk(str(tmp_path / "ds")), max_length=64, seed=6)
    assert other_seed.cache_files != first.cache_files
    assert sorted(map(tuple, other_seed["input_ids"])) == sorted(map(tuple, first["input_ids"]))
    total = sum(len(r["input_ids"]) for r in rows)
    stats = pack_stats(first, 64)
    assert stats["samples"] == 40 and stats["tokens"] == total and stats["rows"] == len(first)
    assert stats["fill"] == round(total / (64 * len(first)), 4)
    assert stats["samples_per_row"]["max"] == max(len(x) for x in first["seq_lengths"])
