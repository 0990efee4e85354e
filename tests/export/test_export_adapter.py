"""--adapter-only: a LoRA adapter as a llama.cpp GGUF adapter, exact against peft's own merge."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch

from sftune.export import ExportError, export_gguf
from sftune.export.architectures import permute_rope

from export_helpers import make_lora


def _delta(adapter_dir, module):
    """peft's W_merged - W_base for one module (what llama.cpp must add)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from sftune.model.loading import adapter_base

    base = AutoModelForCausalLM.from_pretrained(adapter_base(adapter_dir), dtype=torch.float32)
    w0 = base.state_dict()[module].clone()
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    return (merged.state_dict()[module] - w0).numpy()


@pytest.mark.parametrize("rslora", [False, True])
def test_lora_adapter_reproduces_the_peft_delta(rslora, model_dirs, tmp_path):
    adapter = make_lora(model_dirs("llama"), tmp_path / "lora", rslora=rslora)
    res = export_gguf(str(adapter), tmp_path / "lora.gguf", "f32", adapter_only=True)
    r = gguf.GGUFReader(res.path)
    f = {k: v.contents() for k, v in r.fields.items()}
    assert (f["general.type"], f["adapter.type"], f["general.architecture"]) == ("adapter", "lora", "llama")
    alpha = f["adapter.lora.alpha"]
    assert alpha == 8.0
    t = {x.name: np.array(x.data) for x in r.tensors}
    assert len(t) == 2 * 4 * 2  # 4 modules x 2 layers, A and B each
    a, b = t["blk.1.attn_q.weight.lora_a"], t["blk.1.attn_q.weight.lora_b"]
    assert a.shape == (4, 64) and b.shape == (64, 4)  # (rank, in) and (out, rank), as llama-adapter.cpp checks
    # llama.cpp adds (alpha / rank) * B @ A to the *permuted* q matrix of the base GGUF
    want = permute_rope(_delta(adapter, "model.layers.1.self_attn.q_proj.weight"), 4)
    np.testing.assert_allclose(alpha / a.shape[0] * b @ a, want, atol=1e-5)
    a, b = t["blk.0.ffn_down.weight.lora_a"], t["blk.0.ffn_down.weight.lora_b"]
    np.testing.assert_allclose(alpha / a.shape[0] * b @ a, _delta(adapter, "model.layers.0.mlp.down_proj.weight"), atol=1e-5)


def test_adapter_only_refusals(model_dirs, tmp_path):
    with pytest.raises(ExportError, match="needs an adapter folder"):
        export_gguf(str(model_dirs("llama")), tmp_path / "x.gguf", adapter_only=True)
    dora = make_lora(model_dirs("llama"), tmp_path / "dora", dora=True)
    with pytest.raises(ExportError, match="DoRA"):
        export_gguf(str(dora), tmp_path / "x.gguf", adapter_only=True)
    with pytest.raises(ExportError, match="f32, f16 or bf16"):
        export_gguf(str(dora), tmp_path / "x.gguf", "q4_0", adapter_only=True)
    assert not (tmp_path / "x.gguf").exists()


def test_merged_dora_export(model_dirs, tmp_path):
    """Without --adapter-only a DoRA adapter is merged into its base in memory and exported whole."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    dora = make_lora(model_dirs("llama"), tmp_path / "dora", dora=True)
    res = export_gguf(str(dora), tmp_path / "m.gguf", "f32")
    base = AutoModelForCausalLM.from_pretrained(str(model_dirs("llama")), dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(dora)).merge_and_unload().state_dict()
    t = {x.name: np.array(x.data) for x in gguf.GGUFReader(res.path).tensors}
    np.testing.assert_allclose(t["blk.0.attn_v.weight"], merged["model.layers.0.self_attn.v_proj.weight"].numpy(), atol=1e-6)
    np.testing.assert_allclose(t["blk.0.attn_q.weight"], permute_rope(merged["model.layers.0.self_attn.q_proj.weight"].numpy(), 4), atol=1e-6)
