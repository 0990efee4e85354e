"""Which Hugging Face architectures become which llama.cpp architectures, and their hyperparameters.

An architecture is exported only when three things agree: transformers can load it, the ``gguf``
package names its tensors (``gguf.get_tensor_name_map``), and llama.cpp runs it. Anything else is
refused by name before a byte is written.

Llama-family checkpoints need one tensor rewrite: Hugging Face applies rotary embeddings to the two
*halves* of each attention head, llama.cpp's ``llama`` graph to *interleaved pairs*, so the rows of
``q_proj`` / ``k_proj`` are permuted per head (the inverse of the permutation transformers applies
when it reads such a GGUF). Qwen2/Qwen3 use the NeoX (halves) layout in llama.cpp too: no rewrite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gguf
import numpy as np

from .errors import ExportError


@dataclass(frozen=True)
class ArchSpec:
    """How one Hugging Face architecture maps onto llama.cpp."""

    hf_name: str
    arch: gguf.MODEL_ARCH
    permute_qk: bool  # rotary layout differs (Llama): permute q/k rows per head

    @property
    def gguf_name(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.arch]


ARCHITECTURES: dict[str, ArchSpec] = {
    "LlamaForCausalLM": ArchSpec("LlamaForCausalLM", gguf.MODEL_ARCH.LLAMA, permute_qk=True),
    "Qwen2ForCausalLM": ArchSpec("Qwen2ForCausalLM", gguf.MODEL_ARCH.QWEN2, permute_qk=False),
    "Qwen3ForCausalLM": ArchSpec("Qwen3ForCausalLM", gguf.MODEL_ARCH.QWEN3, permute_qk=False),
}

_BY_MODEL_TYPE = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}

#: rope_type values llama.cpp reproduces from metadata alone (no extra frequency tensor).
_ROPE_TYPES = {None, "default", "linear", "yarn"}


def spec_for(config) -> ArchSpec:
    """The export spec of a transformers config; an unsupported architecture is refused by name.

    >>> from transformers import LlamaConfig
    >>> spec_for(LlamaConfig()).gguf_name
    'llama'
    """
    # a config made in code (not loaded from a checkpoint) names no architecture: use its model_type
    names = list(getattr(config, "architectures", None) or [_BY_MODEL_TYPE.get(getattr(config, "model_type", None), "")])
    names = [n for n in names if n]
    for name in names:
        if name in ARCHITECTURES:
            spec = ARCHITECTURES[name]
            _check_rope(config, name)
            return spec
    shown = ", ".join(names) or f"model_type {getattr(config, 'model_type', '?')!r}"
    raise ExportError(
        f"cannot export {shown} to GGUF: sftune exports {', '.join(sorted(ARCHITECTURES))}\n"
        "  fix: export a model of one of these architectures, or convert this one with llama.cpp's convert_hf_to_gguf.py"
    )


def _rope(config) -> dict:
    """The rope settings, from ``rope_parameters`` (transformers 5) or ``rope_scaling`` + ``rope_theta``."""
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    params.setdefault("rope_theta", getattr(config, "rope_theta", None))
    params["rope_type"] = params.get("rope_type") or params.get("type")
    return params


def _check_rope(config, name: str) -> None:
    rope = _rope(config)
    if rope["rope_type"] not in _ROPE_TYPES:
        raise ExportError(f"cannot export {name} with rope_type {rope['rope_type']!r}: sftune writes "
                          f"{', '.join(t for t in _ROPE_TYPES if t)} rope only\n"
                          "  fix: convert this model with llama.cpp's convert_hf_to_gguf.py")
    if rope["rope_theta"] is None:
        raise ExportError(f"{name}: the config has no rope_theta (nor rope_parameters.rope_theta); cannot write llama.rope.freq_base")


def head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def write_hparams(writer: gguf.GGUFWriter, config, spec: ArchSpec) -> None:
    """The architecture keys llama.cpp reads (``{arch}.block_count``, ``.attention.head_count`` ...)."""
    w = writer
    w.add_block_count(config.num_hidden_layers)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    w.add_vocab_size(config.vocab_size)
    hd = head_dim(config)
    w.add_rope_dimension_count(hd)
    # Qwen3 (and some Llamas) set head_dim != hidden/heads; llama.cpp reads it from these two keys.
    w.add_key_length(hd)
    w.add_value_length(hd)
    rope = _rope(config)
    w.add_rope_freq_base(float(rope["rope_theta"]))
    if rope["rope_type"] == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(rope["factor"]))
    elif rope["rope_type"] == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(float(rope["factor"]))
        w.add_rope_scaling_orig_ctx_len(int(rope["original_max_position_embeddings"]))


def permute_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder each head's rows from halves ``[x0..x{d/2-1}, y0..]`` to pairs ``[x0, y0, x1, y1 ...]``.

    Works on a weight ``(n_head*d, in)`` or a bias ``(n_head*d,)``; for LoRA it applies to B only
    (it permutes output rows). Example with one head of dimension 4:

    >>> permute_rope(np.arange(4), 1).tolist()
    [0, 2, 1, 3]
    """
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def row_transform(spec: ArchSpec, config, gguf_name: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """The rewrite a tensor needs before it is written (None: as it is)."""
    if not spec.permute_qk:
        return None
    n_head = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_head
    if ".attn_q." in gguf_name:
        return lambda a: permute_rope(a, n_head)
    if ".attn_k." in gguf_name:
        return lambda a: permute_rope(a, n_kv)
    return None
