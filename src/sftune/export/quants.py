"""The quantization types an export can write, and how each tensor is encoded.

``gguf``'s own quantizers (``gguf.quants.quantize``) implement the legacy block types
(Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) and BF16; F16/F32 are plain numpy casts. The K-quants and
i-quants (Q4_K_M, Q6_K, IQ4_XS ...) need llama.cpp's importance-aware C quantizer, so for those
the export writes F16 and says which ``llama-quantize`` command finishes the job.

Per-tensor policy, the same as llama.cpp's converter: 1-D tensors (norms, biases) stay F32;
a matrix whose rows are not a whole number of quant blocks falls back to F16. For the 4/5-bit
types the token embedding and output matrix are written as Q8_0: with tied embeddings the same
matrix produces every logit, and llama-quantize likewise keeps that tensor at more bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import LlamaFileType as FT

from .errors import ExportError


@dataclass(frozen=True)
class Quant:
    name: str
    qtype: Q
    file_type: FT


QUANTS: dict[str, Quant] = {q.name: q for q in (
    Quant("f32", Q.F32, FT.ALL_F32),
    Quant("f16", Q.F16, FT.MOSTLY_F16),
    Quant("bf16", Q.BF16, FT.MOSTLY_BF16),
    Quant("q8_0", Q.Q8_0, FT.MOSTLY_Q8_0),
    Quant("q5_1", Q.Q5_1, FT.MOSTLY_Q5_1),
    Quant("q5_0", Q.Q5_0, FT.MOSTLY_Q5_0),
    Quant("q4_1", Q.Q4_1, FT.MOSTLY_Q4_1),
    Quant("q4_0", Q.Q4_0, FT.MOSTLY_Q4_0),
)}

#: llama-quantize's names for the types only llama.cpp's C code can produce.
LLAMA_QUANTIZE_ONLY = (
    "q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k",
    "iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq2_m", "iq3_xxs", "iq3_xs", "iq3_s", "iq3_m", "iq4_nl", "iq4_xs",
)

_LOW_BIT = {Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1}
_EMBEDDING_OR_OUTPUT = ("token_embd.weight", "output.weight")


def parse_quant(name: str) -> tuple[Quant, str | None]:
    """``(quant written, K-quant to finish with llama-quantize or None)`` for a ``--quant`` value.

    >>> parse_quant("Q8_0")[0].name
    'q8_0'
    >>> q, finish = parse_quant("q4_k_m"); q.name, finish
    ('f16', 'q4_k_m')
    """
    key = str(name).strip().lower()
    if key in QUANTS:
        return QUANTS[key], None
    if key in LLAMA_QUANTIZE_ONLY:
        return QUANTS["f16"], key
    raise ExportError(f"unknown --quant {name!r}\n  fix: use one of {', '.join(QUANTS)} "
                      f"(written directly), or a llama.cpp K/i-quant such as q4_k_m or q6_k (written as f16, then llama-quantize)")


def tensor_type(gguf_name: str, shape: tuple[int, ...], quant: Quant) -> Q:
    """The GGML type one tensor is stored as under ``quant`` (see the module docstring)."""
    if len(shape) < 2 or quant.qtype == Q.F32:
        return Q.F32
    qtype = quant.qtype
    if qtype in _LOW_BIT and gguf_name in _EMBEDDING_OR_OUTPUT:
        qtype = Q.Q8_0
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    return qtype if shape[-1] % block == 0 else Q.F16


def stored_nbytes(shape: tuple[int, ...], qtype: Q) -> int:
    """Bytes a tensor of ``shape`` takes in the file as ``qtype`` (known before encoding it)."""
    return int(np.prod(gguf.quants.quant_shape_to_byte_shape(shape, qtype)))


def encode(array: np.ndarray, qtype: Q) -> np.ndarray:
    """``array`` (float32) as the bytes the file stores: float32/float16 arrays or quantized uint8 blocks."""
    if qtype == Q.F32:
        return np.ascontiguousarray(array, dtype=np.float32)
    if qtype == Q.F16:
        return np.ascontiguousarray(array, dtype=np.float16)
    return gguf.quants.quantize(np.ascontiguousarray(array, dtype=np.float32), qtype)


def numpy_info(shape: tuple[int, ...], qtype: Q) -> tuple[np.dtype, tuple[int, ...]]:
    """``(numpy dtype, numpy shape)`` that ``GGUFWriter.add_tensor_info`` expects for a tensor about to be encoded."""
    if qtype == Q.F32:
        return np.dtype(np.float32), shape
    if qtype == Q.F16:
        return np.dtype(np.float16), shape
    return np.dtype(np.uint8), tuple(gguf.quants.quant_shape_to_byte_shape(shape, qtype))
