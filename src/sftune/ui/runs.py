"""Training runs started from the page: a run is its output folder.

``start_run`` writes the exact config to ``RUN/ui_config.yaml`` and starts
``python -m sftune train RUN/ui_config.yaml --output-dir RUN`` as a job named ``train``
(see :mod:`sftune.ui.processes`). Progress is read from what the run writes anyway:
``metrics.jsonl`` (one line per logged step), the progress bar in ``train.log``, and
``run_info.json`` once it has finished.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import processes

JOB = "train"
CONFIG_NAME = "ui_config.yaml"
# tqdm's line: "training:  50%|#####     | 1/2 [00:03<00:03,  3.1s/step, loss=..., tok/s=1,234]"
_BAR = re.compile(r"training:.*?\|\s*(\d+)/(\d+)\s*\[([\d:]+)<([\d:?]+)")
_TPS = re.compile(r"tok/s=([\d,.]+)")


@dataclass
class Progress:
    """What the Train page shows about one run."""

    state: str
    step: int = 0
    total: int | None = None
    tokens_per_second: float | None = None
    eta: str | None = None
    memory_mb: float | None = None
    losses: list = field(default_factory=list)  # [(step, loss)]
    eval_losses: list = field(default_factory=list)
    log: str = ""
    returncode: int | None = None

    def summary(self) -> str:
        """One Markdown line: state, step, tokens/s, ETA, memory, last loss (and, on failure, what to do)."""
        parts = [f"**{self.state}**"]
        if self.total:
            parts.append(f"step {self.step}/{self.total}")
        elif self.step:
            parts.append(f"step {self.step}")
        if self.tokens_per_second is not None:
            parts.append(f"{self.tokens_per_second:,.0f} tokens/s")
        if self.eta and self.state == "running":
            parts.append(f"ETA {self.eta}")
        if self.memory_mb is not None:
            parts.append(f"memory {self.memory_mb:,.0f} MB")
        if self.losses:
            parts.append(f"loss {self.losses[-1][1]:.4f}")
        line = " · ".join(parts)
        if self.state == "failed":
            line += f" (exit code {self.returncode}): the log below ends with the reason; fix it, then Start again or Resume"
        elif self.state == "stopped":
            line += ": press Resume to continue from the last complete checkpoint"
        elif self.state == "ended":
            line += ": ended while the app was not watching; see the log"
        return line


def start_run(config: dict, run_dir: str | Path, *, compare: bool = True, resume: bool = False, cwd=None) -> int:
    """Write the config into ``run_dir`` and start training there as a background process."""
    run_dir = Path(run_dir)
    if not resume and is_run(run_dir):
        # A second run would append to this one's metrics.jsonl and mix its checkpoints in.
        raise FileExistsError(f"{run_dir} already holds a run; choose a new run folder, or select it and press Resume")
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = {k: v for k, v in config.items() if k not in ("output_dir", "resume")}
    (run_dir / CONFIG_NAME).write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
    args = ["train", str(run_dir / CONFIG_NAME), "--output-dir", str(run_dir)]
    if resume:
        args += ["--resume", "latest"]
    if not compare:
        args.append("--no-compare")
    return processes.start(processes.sftune_command(*args), run_dir, JOB, cwd=cwd)


def resume_run(run_dir: str | Path, *, compare: bool = True, cwd=None) -> int:
    """Start the run again from its last complete checkpoint, with the config it was started with."""
    run_dir = Path(run_dir)
    cfg_file = run_dir / CONFIG_NAME
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{cfg_file} is missing: only runs started from this page can be resumed here "
                                f"(for others: sftune train CONFIG.yaml --output-dir {run_dir} --resume latest)")
    return start_run(yaml.safe_load(cfg_file.read_text(encoding="utf-8")) or {}, run_dir, compare=compare, resume=True, cwd=cwd)


def stop_run(run_dir: str | Path) -> bool:
    return processes.stop(run_dir, JOB)


def is_run(path: Path) -> bool:
    return any((path / n).exists() for n in (f"{JOB}.pid", "metrics.jsonl", "run_info.json"))


def list_runs(root: str | Path) -> list[Path]:
    """Run folders directly under ``root`` (and ``root`` itself if it is one), newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and is_run(p)]
    if is_run(root):
        found.append(root)
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # the line being written right now
    return rows


def progress(run_dir: str | Path, log_lines: int = 40) -> Progress:
    """Everything the page shows about a run, from its folder alone."""
    run_dir = Path(run_dir)
    job = processes.status(run_dir, JOB)
    state = job.state
    if state in ("none", "ended") and (run_dir / "run_info.json").is_file():
        state = "finished"  # run from the CLI, or ended while the app was away: run_info.json is written last
    rows = read_metrics(run_dir)
    p = Progress(state, returncode=job.returncode)
    p.losses = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    p.eval_losses = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    p.step = max((r.get("step", 0) for r in rows), default=0)
    p.log = processes.log_tail(run_dir, JOB, log_lines)
    bar = _BAR.findall(p.log)
    if bar:
        step, total, _elapsed, eta = bar[-1]
        p.step, p.total = max(p.step, int(step)), int(total)
        p.eta = eta if "?" not in eta else None
    tps = _TPS.findall(p.log)
    if tps:
        p.tokens_per_second = float(tps[-1].rstrip(",.").replace(",", ""))
    elif rows and job.started and rows[-1].get("tokens_seen"):
        p.tokens_per_second = rows[-1]["tokens_seen"] / max(1e-9, time.time() - job.started)
    if state == "running":
        p.memory_mb = processes.memory_mb(job.pid)
    return p


def loss_frame(p: Progress):
    """The loss history as a long table (step, loss, series) for a line plot."""
    import pandas as pd

    rows = [(s, v, "training") for s, v in p.losses] + [(s, v, "held-out") for s, v in p.eval_losses]
    return pd.DataFrame(rows, columns=["step", "loss", "series"])
