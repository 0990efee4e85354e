"""``sftune train --export gguf[:QUANT]``: the export spec, checked before training, and the export after it.

>>> parse_export_spec("gguf:Q8_0")
'q8_0'
>>> parse_export_spec("gguf")
'f16'
"""

from __future__ import annotations

from pathlib import Path

from .errors import ExportError
from .quants import parse_quant


def parse_export_spec(spec: str) -> str:
    """The quant of an ``--export`` value (``gguf`` or ``gguf:QUANT``); refused here, before any training."""
    fmt, _, quant = str(spec).strip().partition(":")
    if fmt.lower() != "gguf":
        raise ExportError(f"--export {spec!r}: the only export format is gguf\n  fix: --export gguf or --export gguf:q8_0")
    quant = (quant or "f16").lower()
    parse_quant(quant)  # raises with the list of quants
    return quant


def export_run(run_dir, spec: str = "gguf", *, force: bool = True, cache_dir=None):
    """Export a finished run folder to ``<run_dir>/<run name>-<quant>.gguf`` (an adapter is merged in)."""
    from .model_gguf import export_gguf

    run_dir = Path(run_dir)
    quant = parse_export_spec(spec)
    return export_gguf(str(run_dir), run_dir / f"{run_dir.name}-{quant}.gguf", quant, force=force, cache_dir=cache_dir)
