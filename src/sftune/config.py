"""The run configuration, kept importable under its old name: see :mod:`sftune.options`.

>>> cfg = SFTConfig(model="default", data=["train.jsonl"], learning_rate=1e-4)
>>> cfg.data[0].path, cfg.mask
('train.jsonl', 'assistant')
"""

from __future__ import annotations

from .errors import ConfigError
from .options import DataSource, Format, MaskPolicy, Method, Precision, SFTConfig, load_config, save_config
from .options import field_help as _field_help


def field_help(name: str) -> str:
    """The docstring of a run-config field (its ``--help`` text)."""
    return _field_help(SFTConfig, name)


__all__ = ["ConfigError", "DataSource", "Format", "MaskPolicy", "Method", "Precision", "SFTConfig", "field_help", "load_config", "save_config"]
