"""--streaming end to end on a tiny random model: training reads the stream, the report lands in run_info.json, resume = uninterrupted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sftune.config import DataSource, SFTConfig

from streaming_rows import BAD, write_rows


def _cfg(model_dir, data, out, **kw) -> SFTConfig:
    base = dict(
        model=str(model_dir), data=[str(d) for d in data], output_dir=str(out), streaming=True, max_steps=4,
        per_device_train_batch_size=4, learning_rate=1e-2, logging_steps=1, save_steps=100, report_to=["none"],
        precision="fp32", cache_dir=str(out.parent / "cache"), warmup_ratio=0.0, method="lora", lora_r=4,
    )
    base.update(kw)
    return SFTConfig(**base)


def _losses(out: Path) -> dict[int, float]:
    entries = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    return {e["step"]: e["loss"] for e in entries if "loss" in e}


def test_streaming_run_trains_and_reports_the_rows_it_read(tiny_model_dir, tmp_path):
    from sftune.train.run import train

    data = write_rows(tmp_path / "train.jsonl", 5000, BAD)
    replay = tmp_path / "replay.jsonl"
    replay.write_text("\n".join(json.dumps({"text": f"General fact number {i}."}) for i in range(40)) + "\n")
    out = tmp_path / "run"
    cfg = _cfg(tiny_model_dir, [data], out, packing=True, max_length=256)
    cfg.data = [cfg.data[0], DataSource(path=str(replay), share=0.2)]
    res = train(cfg, progress=False, compare=False)
    assert len(_losses(out)) == 4 and res.metrics["train_loss"] > 0
    info = json.loads((out / "run_info.json").read_text())["data"]
    main, extra = info["sources"]
    # Training stopped long before the end of the file: the counts are those reached.
    assert 0 < main["rows_in"] < 5000 and main["streaming"] and main["passes"] == 1
    assert main["examples"]["malformed JSON"] == [f"{data}:3"]
    assert [s["probability"] for s in info["mixture"]["sources"]] == [0.8, 0.2]
    assert extra["samples_streamed"] > 0
    assert info["packing"]["rows"] >= 16 and info["packing"]["max_length"] == 256


def test_streaming_run_without_max_steps_fails_before_loading_the_model(tiny_model_dir, tmp_path):
    from sftune.config import ConfigError
    from sftune.train.run import train

    data = write_rows(tmp_path / "train.jsonl", 20)
    with pytest.raises(ConfigError, match="--streaming needs --max-steps"):
        train(_cfg(tiny_model_dir, [data], tmp_path / "run", max_steps=-1), progress=False, compare=False)


@pytest.mark.slow
def test_streaming_resume_continues_where_it_stopped(tiny_model_dir, tmp_path):
    """A run resumed from its step-7 checkpoint logs the losses of steps 8-10 an uninterrupted run logs.

    40 rows make about 4 steps per pass, so the checkpoint lies in the second pass: the Trainer
    skips the batches already trained by reading the endless, seeded stream again.
    """
    from sftune.train.run import train

    data = write_rows(tmp_path / "train.jsonl", 40)
    common = dict(max_steps=10, save_steps=7, save_total_limit=3, packing=True, max_length=128)
    ref = tmp_path / "ref"
    train(_cfg(tiny_model_dir, [data], ref, **common), progress=False, compare=False)
    assert json.loads((ref / "run_info.json").read_text())["data"]["sources"][0]["passes"] >= 3
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(ref / "checkpoint-7", resumed / "checkpoint-7")
    train(_cfg(tiny_model_dir, [data], resumed, resume="latest", **common), progress=False, compare=False)
    want, got = _losses(ref), _losses(resumed)
    assert sorted(got) == [8, 9, 10]
    assert [got[s] for s in (8, 9, 10)] == pytest.approx([want[s] for s in (8, 9, 10)], rel=1e-4, abs=1e-5)
    # Not trivially equal: resumed without skipping, the stream starts again and the losses differ.
    unskipped = tmp_path / "unskipped"
    unskipped.mkdir()
    shutil.copytree(ref / "checkpoint-7", unskipped / "checkpoint-7")
    train(_cfg(tiny_model_dir, [data], unskipped, resume="latest", training_args={"ignore_data_skip": True}, **common),
          progress=False, compare=False)
    other = _losses(unskipped)
    assert [other[s] for s in (8, 9, 10)] != pytest.approx([want[s] for s in (8, 9, 10)], rel=1e-3)


@pytest.mark.slow
def test_streaming_under_two_ddp_processes(tiny_model_dir, tmp_path):
    """torchrun, 2 CPU processes (gloo): rank 0 reads the stream and dispatches the batches; the run finishes and reports."""
    import os
    import subprocess
    import sys

    data = write_rows(tmp_path / "train.jsonl", 3000, BAD)
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
        "-m", "sftune", "train", "--model", str(tiny_model_dir), "--data", str(data), "--output-dir", str(out),
        "--streaming", "--packing", "--max-length", "256", "--method", "lora", "--max-steps", "3",
        "--per-device-train-batch-size", "2", "--precision", "fp32", "--report-to", "none", "--no-progress",
        "--no-compare", "--cache-dir", str(tmp_path / "cache"), "--logging-steps", "1",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((out / "run_info.json").read_text())
    assert info["world_size"] == 2
    src = info["data"]["sources"][0]
    assert src["rows_in"] > 0 and src["examples"]["malformed JSON"] == [f"{data}:3"]
    assert len(_losses(out)) == 3
