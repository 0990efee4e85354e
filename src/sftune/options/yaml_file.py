"""Reading and writing a run config as YAML; flags given on the command line win over the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import ConfigError
from .base import explain
from .training import SFTConfig


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> SFTConfig:
    """Read a YAML file (optional) and apply overrides (e.g. from the command line) on top.

    Unknown keys fail with a suggestion; wrong types fail naming the key and the file.
    """
    raw: dict[str, Any] = {}
    origin = "command line"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}", where=str(p))
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}", where=str(p)) from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: expected a mapping of keys to values at the top level", where=str(p))
        origin = str(p)
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        # model_validate skips OptionGroup.__init__, so the error names the file, not the class.
        return SFTConfig.model_validate(raw)
    except ValidationError as e:
        raise explain(e, f"configuration in {origin}", SFTConfig) from None


def save_config(cfg: SFTConfig, path: str | Path) -> None:
    """Write ``cfg`` as YAML that :func:`load_config` reads back to an equal config."""
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True), encoding="utf-8")
