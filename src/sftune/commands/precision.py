"""The one precision vocabulary on the command line: ``--precision auto|fp32|bf16|fp16``.

The names and their aliases belong to :mod:`sftune.model.precision`; this module only adds the
flags. Inference commands once took ``--dtype float32|bfloat16|float16``: it is still accepted
(hidden) and lands in the same ``args.precision``, parsed by the same function.

>>> import argparse
>>> p = argparse.ArgumentParser(); add_precision_args(p, "precision")
>>> p.parse_args(["--dtype", "bfloat16"]).precision, p.parse_args(["--precision", "fp32"]).precision
('bf16', 'fp32')
"""

from __future__ import annotations

import argparse

from ..model.precision import PRECISIONS, parse_precision


def add_precision_args(parser, help_: str) -> None:
    """``--precision`` plus the hidden old ``--dtype`` alias (both land in ``args.precision``)."""
    parser.add_argument("--precision", choices=list(PRECISIONS), default=None, help=help_)
    parser.add_argument("--dtype", dest="precision", default=None, type=parse_precision, help=argparse.SUPPRESS)
