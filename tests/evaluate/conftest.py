"""Fixtures for the evaluation tests: a tiny "fine-tuned" full model and a tiny LoRA adapter,
both recording the tiny base model they came from, as ``sftune train`` does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    # Prepared datasets are cached under $SFTUNE_CACHE: keep each test's cache to itself.
    monkeypatch.setenv("SFTUNE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def tuned_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A full "fine-tuned" folder: the tiny base with seeded noise on every weight, and a
    sftune_config.yaml naming the base (as ``sftune train --method full`` writes it)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    with torch.no_grad():
        for prm in model.parameters():
            prm.add_(0.5 * torch.randn_like(prm))
    out = tmp_path_factory.mktemp("tuned")
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(tiny_model_dir)).save_pretrained(str(out))
    (out / "sftune_config.yaml").write_text(f"model: {tiny_model_dir}\nmethod: full\nmax_length: 256\n", encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def adapter_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A LoRA adapter on the tiny base with random (non-zero) B matrices, so it changes the outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(3)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    out = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(tiny_model_dir)).save_pretrained(str(out))
    (out / "sftune_config.yaml").write_text(f"model: {tiny_model_dir}\nmethod: lora\n", encoding="utf-8")
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    return out


@pytest.fixture()
def qa_file(tmp_path) -> Path:
    """Alpaca rows with reference answers, English and Chinese."""
    rows = [
        {"instruction": "What is the capital of France?", "output": "Paris"},
        {"instruction": "你是谁？", "output": "我是 Kestrel。"},
        {"instruction": "Say hi", "input": "politely", "output": "Hello | there"},
    ]
    p = tmp_path / "qa.jsonl"
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return p
