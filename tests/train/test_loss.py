"""Chunked LM-head cross-entropy: same loss and gradients as the model's own loss."""

from __future__ import annotations

import pytest
import torch

from sftune.data.collate import PaddingCollator
from sftune.train.loss import chunked_causal_lm_loss, chunked_parts, linear_cross_entropy_sum

from test_packing import make_rows  # tests/train is on sys.path (rootdir-less test modules)

ATOL = 1e-5  # float32: the chunked loss only reorders sums


@pytest.fixture()
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _compare(model, batch, n_items, atol=ATOL, chunk=7):
    model.zero_grad()
    own = model(**batch, num_items_in_batch=n_items, use_cache=False).loss
    own.backward()
    g_own = _grads(model)
    model.zero_grad()
    parts, why = chunked_parts(model)
    assert why is None
    ours = chunked_causal_lm_loss(*parts, batch, n_items, chunk=chunk)  # small chunks: several per batch
    ours.backward()
    g_ours = _grads(model)
    assert ours.item() == pytest.approx(own.item(), abs=atol)
    assert g_ours.keys() == g_own.keys() and g_own
    for name in g_own:
        torch.testing.assert_close(g_ours[name], g_own[name], atol=atol, rtol=1e-3, msg=name)


def test_linear_cross_entropy_matches_torch():
    torch.manual_seed(0)
    h = torch.randn(50, 16, requires_grad=True)
    w = torch.randn(300, 16, requires_grad=True)
    b = torch.randn(300, requires_grad=True)
    t = torch.randint(0, 300, (50,))
    ref = torch.nn.functional.cross_entropy(h @ w.t() + b, t, reduction="sum")
    gref = torch.autograd.grad(2.5 * ref, (h, w, b))
    ours = linear_cross_entropy_sum(h, w, b, t, chunk=13)
    gours = torch.autograd.grad(2.5 * ours, (h, w, b))  # the upstream gradient scales the stored ones
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)
    for a, r in zip(gours, gref):
        torch.testing.assert_close(a, r, atol=1e-4, rtol=1e-5)


def test_same_loss_and_gradients_as_the_model(tiny):
    rows = make_rows(6, seed=3)
    batch = PaddingCollator(pad_token_id=0)(rows)
    n_items = int((batch["labels"][:, 1:] != -100).sum())
    _compare(tiny, batch, n_items)
    _compare(tiny, batch, None)  # mean over the batch's trained tokens


def test_lora_model(tiny):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    rows = make_rows(4, seed=4)
    batch = PaddingCollator(pad_token_id=0)(rows)
    _compare(model, batch, 57)
    assert any("lora" in n for n, p in model.named_parameters() if p.requires_grad)


def test_bf16_autocast_close_to_the_model(tiny):
    rows = make_rows(4, seed=5)
    batch = PaddingCollator(pad_token_id=0)(rows)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        own = tiny(**batch, use_cache=False).loss
        parts, _ = chunked_parts(tiny)
        ours = chunked_causal_lm_loss(*parts, batch)
    assert ours.dtype == torch.float32
    # both use bf16 matmuls; the log-softmax is float32 in ours, so they agree to bf16 precision
    assert ours.item() == pytest.approx(own.item(), rel=2e-2)


def test_prompt_tuning_falls_back(tiny):
    from peft import PromptTuningConfig, get_peft_model

    model = get_peft_model(tiny, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    parts, why = chunked_parts(model)
    assert parts is None and "virtual tokens" in why
