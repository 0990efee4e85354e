"""Tiny random models of each exportable architecture, on the real SmolLM2 tokenizer, and a LoRA adapter."""

from __future__ import annotations

from pathlib import Path

import pytest


def make_model(kind: str, tokenizer_dir: Path, out: Path, *, seed: int = 0) -> Path:
    """A 2-layer random model of ``kind`` (llama | llama_untied | qwen2 | qwen3) saved with the tokenizer.

    Weights are drawn at std 0.3 (not the 0.02 init) so logits differ clearly between tokens and
    a wrong permutation or a swapped tensor cannot hide in rounding.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    common = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    if kind in ("llama", "llama_untied"):
        model = LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=kind == "llama", rope_theta=10000.0))
    elif kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=True, rope_theta=1000000.0))
    elif kind == "qwen3":  # head_dim 32 != hidden/heads 16: exercises key_length/value_length
        model = Qwen3ForCausalLM(Qwen3Config(**common, head_dim=32, tie_word_embeddings=True, rope_theta=1000000.0))
    else:
        raise ValueError(kind)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            centre = 1.0 if "norm" in name else 0.0  # norm weights scale around 1, biases and matrices around 0
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + centre)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def model_dirs(smol_tokenizer_dir, tmp_path_factory):
    """kind -> folder, built lazily once per session."""
    cache: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in cache:
            cache[kind] = make_model(kind, smol_tokenizer_dir, tmp_path_factory.mktemp(kind))
        return cache[kind]

    return get
