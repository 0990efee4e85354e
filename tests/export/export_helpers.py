"""Helpers for the export tests (a module of its own: several test folders have a conftest.py)."""

from __future__ import annotations

from pathlib import Path


def make_lora(base_dir: Path, out: Path, *, rslora: bool = False, dora: bool = False, seed: int = 1) -> Path:
    """A LoRA adapter on q/k/v/down with B randomised (peft starts B at zero, a no-op)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    torch.manual_seed(seed)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "down_proj"], lora_dropout=0.0,
                     use_rslora=rslora, use_dora=dora)
    model = get_peft_model(base, cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(base_dir)).save_pretrained(str(out))
    return out
