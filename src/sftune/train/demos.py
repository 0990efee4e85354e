"""Bundled demo runs: ``src/sftune/resources/demos/<name>.yaml``, configs whose data ship with sftune.

A demo config is an ordinary training config except that its data paths are relative to the
bundled resources folder, so it works from any working directory.

>>> sorted(demo_names())
['tools']
>>> cfg = demo_config("tools")
>>> Path(cfg.data[0].path).name, cfg.template
('tools_demo.jsonl', 'hermes')
"""

from __future__ import annotations

from pathlib import Path

from ..config import ConfigError, SFTConfig, load_config

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
DEMOS = RESOURCES / "demos"


def demo_names() -> list[str]:
    return sorted(p.stem for p in DEMOS.glob("*.yaml"))


def demo_config(name: str, overrides: dict | None = None) -> SFTConfig:
    """The config of demo ``name`` with ``overrides`` (e.g. from the command line) on top."""
    path = DEMOS / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown demo {name!r}: the bundled demos are {', '.join(demo_names())}")
    cfg = load_config(path, overrides)
    for src in [*cfg.data, *cfg.eval_data]:
        # Only paths the YAML gave relative to resources; an override's own path is left as given.
        if not Path(src.path).is_absolute() and (RESOURCES / src.path).exists() and not Path(src.path).exists():
            src.path = str(RESOURCES / src.path)
    if cfg.eval_tools and not Path(cfg.eval_tools).is_absolute() and (RESOURCES / cfg.eval_tools).is_file() and not Path(cfg.eval_tools).exists():
        cfg.eval_tools = str(RESOURCES / cfg.eval_tools)
    return cfg
