"""Two CPU processes with DDP (gloo) through torchrun: the same command a GPU cluster uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROWS = [
    {"messages": [{"role": "user", "content": f"Spell {w}"}, {"role": "assistant", "content": " ".join(w.upper())}]}
    for w in ["cat", "dog", "bird", "fish", "horse", "mouse", "lion", "tiger", "bear", "wolf", "frog", "duck"]
]


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tiny_model_dir, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29531",
        "-m", "sftune", "train", "--model", str(tiny_model_dir), "--data", str(data), "--output-dir", str(out),
        "--method", "lora", "--distributed", "ddp", "--max-steps", "3", "--per-device-train-batch-size", "2", "--precision", "fp32",
        "--report-to", "none", "--no-progress", "--no-compare", "--cache-dir", str(tmp_path / "cache"),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the chunked loss runs inside the model's forward, so DDP's wrapper no longer forces the fallback
    assert "chunked cross-entropy over trained tokens only" in proc.stderr and "chunked loss not used" not in proc.stderr
    info = json.loads((out / "run_info.json").read_text())
    # Both ranks trained: the Trainer saw world_size 2, so 3 steps consumed 3 * 2 * 2 samples.
    assert info["world_size"] == 2
    assert (out / "adapter_model.safetensors").is_file()
