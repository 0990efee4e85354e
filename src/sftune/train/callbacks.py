"""What sftune adds around ``transformers.Trainer``: a progress bar, a metrics log, a loss curve,
and checkpoints that are only trusted once they are complete."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from transformers import TrainerCallback

from ..atomic import atomic_file

#: Written into a checkpoint folder after the Trainer has finished writing it. A folder without
#: it (a run killed mid-write) is never resumed from.
COMPLETE_MARKER = "sftune_checkpoint_complete.json"


class ProgressBar(TrainerCallback):
    """One tqdm bar: step, loss, learning rate, tokens/s and ETA."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bar = None
        self.t0 = None
        self.tokens0 = 0
        self.last = {}

    def on_train_begin(self, args, state, control, **kw):
        if not (self.enabled and state.is_world_process_zero):
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="training", unit="step", dynamic_ncols=True)
        self.t0 = time.perf_counter()
        self.tokens0 = state.num_input_tokens_seen or 0

    def on_step_end(self, args, state, control, **kw):
        if self.bar is None:
            return
        self.bar.update(state.global_step - self.bar.n)
        elapsed = max(1e-9, time.perf_counter() - self.t0)
        tps = ((state.num_input_tokens_seen or 0) - self.tokens0) / elapsed
        post = {k: v for k, v in self.last.items()}
        post["tok/s"] = f"{tps:,.0f}"
        self.bar.set_postfix(post, refresh=False)

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            self.last = {"loss": f"{logs['loss']:.4f}", "lr": f"{logs.get('learning_rate', 0):.2e}"}
        if self.bar is not None and logs and "eval_loss" in logs:
            self.bar.write(f"step {state.global_step}: eval_loss {logs['eval_loss']:.4f}")

    def on_train_end(self, args, state, control, **kw):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class MetricsLog(TrainerCallback):
    """Keeps every log entry; writes ``metrics.jsonl`` as training goes and a loss-curve PNG at the end."""

    def __init__(self, output_dir: str | Path):
        self.output_dir = Path(output_dir)
        self.history: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kw):
        if not logs or not state.is_world_process_zero:
            return
        entry = {"step": state.global_step, "epoch": state.epoch, "tokens_seen": state.num_input_tokens_seen, **logs}
        self.history.append(entry)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with open(self.output_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def on_train_end(self, args, state, control, **kw):
        if state.is_world_process_zero and self.history:
            plot_loss(self.history, self.output_dir / "loss_curve.png")


def plot_loss(history: list[dict], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h and math.isfinite(h["loss"])]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    if not train and not evals:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="training loss", color="#4c72b0")
    if evals:
        ax.plot(*zip(*evals), "o-", label="held-out loss", color="#dd8452")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mean over trained tokens)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


class CheckpointMarker(TrainerCallback):
    """Marks a checkpoint complete once the Trainer has written all of it (on_save runs after)."""

    def on_save(self, args, state, control, **kw):
        if not state.is_world_process_zero:
            return
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir():
            with atomic_file(ckpt / COMPLETE_MARKER) as f:
                f.write(json.dumps({"global_step": state.global_step, "time": time.time()}))


def latest_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest ``checkpoint-N`` folder carrying the completion marker (incomplete ones are skipped)."""
    out = Path(output_dir)
    if not out.is_dir():
        return None
    ckpts = []
    for p in out.glob("checkpoint-*"):
        try:
            step = int(p.name.split("-")[-1])
        except ValueError:
            continue
        if (p / COMPLETE_MARKER).is_file():
            ckpts.append((step, p))
    return max(ckpts)[1] if ckpts else None
