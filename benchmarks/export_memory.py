"""Peak memory and time of `sftune export` on a real model (default: SmolLM2-135M-Instruct).

Run: python benchmarks/export_memory.py [--model default] [--quant f16] [--out /tmp/x.gguf]
Prints the parameter count, the float32 size, the peak resident memory of the whole process
(Python, torch and transformers included) and of the export alone (peak minus the RSS right
after imports), and the ratios to the float32 size; the issue's target is < 2.5x.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from proc_memory import peak_mb, rss_mb


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    ap.add_argument("--quant", default="f16")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    import torch  # noqa: F401  (imported before the baseline so it is not counted as export memory)
    import transformers  # noqa: F401

    from sftune.export import export_gguf
    from sftune.model.loading import resolve_model

    resolve_model(a.model)  # a one-time GGUF -> folder conversion is not part of the export
    base = rss_mb()
    out = Path(a.out or tempfile.mkdtemp()) / "model.gguf" if not (a.out or "").endswith(".gguf") else Path(a.out)
    t = time.time()
    res = export_gguf(a.model, out, a.quant, force=True)
    secs = time.time() - t
    peak = peak_mb()
    f32 = res.n_params * 4 / 2**20
    print(f"model {a.model}: {res.n_params:,} parameters, float32 {f32:.0f} MiB; {a.quant} file {out.stat().st_size / 2**20:.0f} MiB in {secs:.0f} s")
    print(f"peak RSS {peak:.0f} MiB = {peak / f32:.2f}x float32 (process, incl. {base:.0f} MiB after imports); "
          f"export alone {peak - base:.0f} MiB = {(peak - base) / f32:.2f}x")


if __name__ == "__main__":
    main()
