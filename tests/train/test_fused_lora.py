"""Fused LoRA linears must give peft's results, and step aside where they can't."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from sftune.train.fused_lora import fused_lora_linears

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _llama(seed: int = 0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, attn_implementation="sdpa")
    return LlamaForCausalLM(cfg)


def _lora(model, **kw):
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, task_type="CAUSAL_LM", **kw))
    with torch.no_grad():  # peft starts B at zero, which would hide a wrong adapter path
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return model


def _step(model, ids, seed=1, backward=True):
    torch.manual_seed(seed)  # the same dropout draws for both paths
    model.zero_grad()
    out = model(input_ids=ids, labels=ids, use_cache=False)
    if backward:
        out.loss.backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(a, b, atol=1e-5):
    torch.testing.assert_close(a[0], b[0], atol=atol, rtol=1e-4)
    assert a[1].keys() == b[1].keys() and a[1]
    for name in a[1]:
        torch.testing.assert_close(a[1][name], b[1][name], atol=atol, rtol=1e-4, msg=name)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_fused_lora_gives_peft_results_and_restores_the_modules(dropout):
    model = _lora(_llama(), lora_dropout=dropout).train()
    ids = torch.randint(0, 100, (2, 9))
    ref = _step(model, ids)
    with fused_lora_linears(model) as count:
        assert count == 2 * len(TARGETS)
        fused = _step(model, ids)
    _assert_same(fused, ref)
    assert not any("forward" in vars(m) for m in model.modules())  # peft's forward is back
    _assert_same(_step(model, ids), ref, atol=0)


def test_fused_lora_follows_adapter_switches_inside_the_block():
    model = _lora(_llama()).train()
    ids = torch.randint(0, 100, (1, 7))
    with model.disable_adapter():  # nothing trainable without the adapter: forward only
        base = _step(model, ids, backward=False)
    with fused_lora_linears(model):
        with model.disable_adapter():  # decided per call: disabled adapters take peft's path
            torch.testing.assert_close(_step(model, ids, backward=False)[0], base[0], atol=0, rtol=0)
        adapted = _step(model, ids, backward=False)
    assert (adapted[0] - base[0]).abs().max() > 1e-3  # control: the adapter does change the output


def test_dora_and_full_models_keep_their_own_linears():
    dora = _lora(_llama(), use_dora=True).train()
    ids = torch.randint(0, 100, (1, 6))
    ref = _step(dora, ids)
    with fused_lora_linears(dora) as count:
        assert count == 0
        _assert_same(_step(dora, ids), ref, atol=0)
    with fused_lora_linears(_llama()) as count:
        assert count == 0


def test_fused_lora_under_bf16_autocast_matches_peft():
    model = _lora(_llama()).train()
    ids = torch.randint(0, 100, (1, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = _step(model, ids)
        with fused_lora_linears(model):
            fused = _step(model, ids)
    _assert_same(fused, ref, atol=5e-2)


def test_an_adapter_switched_off_mid_block_is_seen_per_call():
    """Adapters merged inside the block (as a merge-and-continue callback might) take peft's path."""
    model = _lora(_llama()).train()
    ids = torch.randint(0, 100, (1, 5))
    with fused_lora_linears(model):
        before = _step(model, ids, backward=False)[0]
        model.merge_adapter()
        merged = _step(model, ids, backward=False)[0]
        model.unmerge_adapter()
    torch.testing.assert_close(merged, before, atol=1e-4, rtol=1e-4)


def test_zero3_partitioned_weights_take_peft_path():
    """A weight DeepSpeed ZeRO-3 has partitioned (it carries ds_id) is gathered by the base layer's own hooks."""
    model = _lora(_llama()).train()
    ids = torch.randint(0, 100, (1, 5))
    ref = _step(model, ids)
    with fused_lora_linears(model):
        q = model.get_base_model().model.layers[0].self_attn.q_proj
        q.base_layer.weight.ds_id = 7
        peft_calls = []
        real = type(q).forward
        type(q).forward = lambda self, x, *a, **k: peft_calls.append(self) or real(self, x, *a, **k)
        try:
            _assert_same(_step(model, ids), ref)
        finally:
            type(q).forward = real
            del q.base_layer.weight.ds_id
    assert peft_calls == [q]  # only the "partitioned" linear went through peft
