"""The exported file, read back by transformers' own GGUF loader, computes the same logits (per architecture)."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch

from sftune.export import export_gguf


def _logits(model_or_dir, ids, **kw):
    from transformers import AutoModelForCausalLM

    model = model_or_dir if not isinstance(model_or_dir, (str, bytes)) and hasattr(model_or_dir, "forward") else \
        AutoModelForCausalLM.from_pretrained(str(model_or_dir), dtype=torch.float32, **kw)
    with torch.no_grad():
        return model.eval()(torch.tensor([ids])).logits[0]


@pytest.mark.parametrize("kind", ["llama", pytest.param("llama_untied", marks=pytest.mark.slow),
                                  pytest.param("qwen2", marks=pytest.mark.slow), pytest.param("qwen3", marks=pytest.mark.slow)])
def test_f32_export_reloads_in_transformers_with_same_logits(kind, model_dirs, tmp_path):
    src = model_dirs(kind)
    res = export_gguf(str(src), tmp_path / "m.gguf", "f32")
    ids = [1, 504, 3575, 282, 4649, 314, 2, 27, 100]
    want = _logits(str(src), ids)
    # transformers' GGUF reader ignores {arch}.attention.key_length (llama.cpp reads it) and would
    # rebuild Qwen3 with head_dim = hidden/heads; the file carries 32, so tell the reader.
    extra = {"head_dim": 32} if kind == "qwen3" else {}
    got = _logits(str(tmp_path), ids, gguf_file="m.gguf", **extra)
    # The only difference allowed is float32 rounding: a wrong q/k permutation, a swapped
    # tensor or a missing bias moves logits by whole units at std-0.3 weights.
    torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-4)
    assert res.n_params > 0 and res.path == tmp_path / "m.gguf"


def test_metadata_of_each_architecture(model_dirs, tmp_path):
    r = gguf.GGUFReader(export_gguf(str(model_dirs("qwen3")), tmp_path / "q3.gguf", "f16").path)
    f = {k: v.contents() for k, v in r.fields.items() if k not in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type")}
    assert f["general.architecture"] == "qwen3" and f["general.type"] == "model"
    assert (f["qwen3.block_count"], f["qwen3.embedding_length"], f["qwen3.attention.head_count"], f["qwen3.attention.head_count_kv"]) == (2, 64, 4, 2)
    assert (f["qwen3.attention.key_length"], f["qwen3.attention.value_length"], f["qwen3.context_length"]) == (32, 32, 256)
    assert f["qwen3.rope.freq_base"] == 1000000.0
    assert f["general.file_type"] == gguf.LlamaFileType.MOSTLY_F16
    names = {t.name for t in r.tensors}
    assert {"blk.0.attn_q_norm.weight", "blk.1.attn_k_norm.weight", "token_embd.weight"} <= names
    assert "output.weight" not in names  # tied: llama.cpp reuses token_embd
    r2 = gguf.GGUFReader(export_gguf(str(model_dirs("qwen2")), tmp_path / "q2.gguf", "f16").path)
    assert {"blk.0.attn_q.bias", "blk.0.attn_k.bias", "blk.0.attn_v.bias"} <= {t.name for t in r2.tensors}
    r3 = gguf.GGUFReader(export_gguf(str(model_dirs("llama_untied")), tmp_path / "l.gguf", "f16").path)
    assert "output.weight" in {t.name for t in r3.tensors}


@pytest.mark.parametrize("quant,main,embd,tol", [
    ("f16", "F16", "F16", 2e-3), ("bf16", "BF16", "BF16", 1e-2), ("q8_0", "Q8_0", "Q8_0", 1.5e-2),
    ("q5_0", "Q5_0", "Q8_0", 6e-2), ("q4_0", "Q4_0", "Q8_0", 1.2e-1),
])  # tol: mean relative error of the decoded weights, about half a quant step
def test_quantized_tensors_decode_to_the_weights(quant, main, embd, tol, model_dirs, tmp_path):
    from transformers import AutoModelForCausalLM

    src = model_dirs("qwen2")
    res = export_gguf(str(src), tmp_path / "m.gguf", quant)
    state = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32).state_dict()
    r = gguf.GGUFReader(res.path)
    types = {t.name: t.tensor_type.name for t in r.tensors}
    assert types["blk.0.attn_q.weight"] == main and types["blk.1.ffn_down.weight"] == main
    assert types["token_embd.weight"] == embd  # 4/5-bit files keep the (tied) output matrix at Q8_0
    assert types["blk.0.attn_norm.weight"] == "F32" and types["blk.0.attn_q.bias"] == "F32"
    t = next(t for t in r.tensors if t.name == "blk.1.ffn_down.weight")
    got = gguf.quants.dequantize(t.data, t.tensor_type).reshape(state["model.layers.1.mlp.down_proj.weight"].shape)
    want = state["model.layers.1.mlp.down_proj.weight"].numpy()
    err = np.abs(got - want).mean() / np.abs(want).mean()
    assert err < tol, (quant, err)
