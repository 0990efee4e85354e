"""The one precision vocabulary on the command line: ``--precision auto|fp32|bf16|fp16``.

Inference commands once took ``--dtype float32|bfloat16|float16``; it is still accepted (hidden)
and mapped onto the same names.

>>> PRECISION_OF_DTYPE["bfloat16"], torch_dtype("auto"), torch_dtype(None)
('bf16', None, None)
"""

from __future__ import annotations

import argparse

#: Old --dtype names -> the precision names.
PRECISION_OF_DTYPE = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
_TORCH_NAME = {v: k for k, v in PRECISION_OF_DTYPE.items()}


def torch_dtype(precision: str | None):
    """The torch dtype of a precision name; ``None`` for ``auto``/``None`` (the loader decides)."""
    if precision in (None, "auto"):
        return None
    import torch

    return getattr(torch, _TORCH_NAME[precision])


def add_precision_args(parser, help_: str) -> None:
    """``--precision`` plus the hidden old ``--dtype`` alias (both land in ``args.precision``)."""
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default=None, help=help_)
    parser.add_argument("--dtype", dest="precision", choices=list(PRECISION_OF_DTYPE.values()), default=None,
                        type=lambda v: PRECISION_OF_DTYPE.get(v, v), help=argparse.SUPPRESS)
