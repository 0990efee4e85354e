"""Methods on a tiny Llama: which parameters train, PEFT wrappers, selective freezing, clear errors."""

from __future__ import annotations

import pytest
import torch

from sftune.config import SFTConfig
from sftune.model.methods import MethodError, apply_method, describe_parameters, parameter_counts, qlora_load_kwargs


@pytest.fixture()
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)


def _cfg(**kw) -> SFTConfig:
    return SFTConfig(model="x", **kw)


def _trainable_names(model) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def test_full_trains_everything_and_counts_tied_weights_once(tiny):
    model = apply_method(tiny, _cfg(method="full"))
    t, n = parameter_counts(model)
    assert t == n
    # tie_word_embeddings: lm_head.weight is embed_tokens.weight, so it is not counted twice
    assert n == sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert describe_parameters(model).startswith(f"trainable parameters: {n:,} of {n:,}")


def test_lora_defaults_to_every_projection_of_a_llama(tiny):
    model = apply_method(tiny, _cfg(method="lora", lora_r=4, lora_alpha=8))
    names = _trainable_names(model)
    assert names and all("lora_" in n for n in names)
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert any(f"{proj}.lora_A" in n for n in names), proj
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    assert layer.r["default"] == 4 and layer.scaling["default"] == 2.0
    t, n = parameter_counts(model)
    assert 0 < t < n / 10


def test_dora_sets_magnitude_vectors(tiny):
    model = apply_method(tiny, _cfg(method="dora", lora_r=2, target_modules=["q_proj", "v_proj"]))
    names = _trainable_names(model)
    assert any("lora_magnitude_vector" in n for n in names)
    assert not any("k_proj" in n for n in names)


@pytest.mark.parametrize("method", ["ia3", "prompt_tuning", "prefix_tuning", "p_tuning"])
def test_other_peft_methods_train_only_their_parameters_and_run_a_step(tiny, method):
    model = apply_method(tiny, _cfg(method=method, num_virtual_tokens=4))
    t, n = parameter_counts(model)
    assert 0 < t < n
    before = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids)
    out.loss.backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0).step()
    changed = [k for k, v in model.named_parameters() if v.requires_grad and not torch.equal(v, before[k])]
    assert changed, f"{method}: one SGD step changed no trainable parameter"
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for p in frozen)


def test_selective_unfreezes_only_matching_parameters(tiny):
    model = apply_method(tiny, _cfg(method="selective", trainable_modules=[r"layers\.1\.mlp\."]))
    names = _trainable_names(model)
    assert names == [
        "model.layers.1.mlp.gate_proj.weight", "model.layers.1.mlp.up_proj.weight", "model.layers.1.mlp.down_proj.weight",
    ]


def test_selective_errors_name_the_fix(tiny):
    with pytest.raises(MethodError, match="needs --trainable-modules"):
        apply_method(tiny, _cfg(method="selective"))
    with pytest.raises(MethodError, match="match no parameter. Names look like"):
        apply_method(tiny, _cfg(method="selective", trainable_modules=["transformer\\.h\\."]))
    with pytest.raises(MethodError, match="not a valid regular expression"):
        apply_method(tiny, _cfg(method="selective", trainable_modules=["layers\\.(1"]))


def test_unknown_lora_targets_list_the_real_layer_names(tiny):
    with pytest.raises(MethodError, match=r"match no module.*'q_proj'"):
        apply_method(tiny, _cfg(method="lora", target_modules=["c_attn"]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only error path")
def test_qlora_on_cpu_says_why_and_what_to_use():
    with pytest.raises(MethodError, match="needs a CUDA GPU.*--method lora"):
        qlora_load_kwargs(_cfg(method="qlora"))


def test_gradient_checkpointing_with_lora_still_trains_the_adapters(tiny):
    model = apply_method(tiny, _cfg(method="lora", lora_r=2, gradient_checkpointing=True))
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    model.train()
    ids = torch.tensor([[5, 6, 7, 8]])
    model(input_ids=ids, labels=ids).loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_A" in n]
    assert grads and all(g is not None for g in grads)
