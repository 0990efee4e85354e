"""How the model is fine-tuned: full, a PEFT adapter, or selected parameters."""

from __future__ import annotations

from typing import ClassVar, Literal

from .base import OptionGroup

Method = Literal["full", "lora", "qlora", "dora", "ia3", "prompt_tuning", "prefix_tuning", "p_tuning", "selective"]


class MethodOptions(OptionGroup):
    """The fine-tuning method and its knobs (adapter rank, targets, NEFTune, merging)."""

    group_name: ClassVar[str] = "method"

    method: Method = "lora"
    """full, lora, qlora (CUDA only), dora, ia3, prompt_tuning, prefix_tuning, p_tuning, selective."""
    lora_r: int = 16
    """LoRA/DoRA rank."""
    lora_alpha: int = 32
    """LoRA/DoRA scaling numerator (scale = alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input."""
    target_modules: list[str] | None = None
    """Modules that get adapters (default: all attention and MLP projections for the architecture)."""
    num_virtual_tokens: int = 20
    """Virtual tokens for prompt tuning, prefix tuning and P-tuning."""
    trainable_modules: list[str] | None = None
    """Selective fine-tuning: regexes of parameter names to train (e.g. 'layers\\.(28|29)\\.', 'lm_head'); the rest is frozen."""
    neftune_alpha: float | None = None
    """NEFTune noise strength (5 is a common choice); uniform noise of scale alpha/sqrt(L*d) on input embeddings in training."""
    merge: bool = False
    """After adapter training, also write a merged full model to OUTPUT/merged."""
