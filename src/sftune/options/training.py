"""The training loop's settings (passed to transformers.TrainingArguments), and the flat run config."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from .base import OptionGroup
from .data import DataOptions
from .method import MethodOptions
from .model import ModelOptions

Distributed = Literal["auto", "ddp", "fsdp", "deepspeed-zero2", "deepspeed-zero3"]
"""Which engine runs several processes (see sftune.train.distributed)."""


class TrainingOptions(OptionGroup):
    """The optimisation loop: schedule, batch sizes, checkpoints, logging. Names mean what they mean in transformers.TrainingArguments."""

    group_name: ClassVar[str] = "training"

    output_dir: str | None = None
    """Where the run is written (default: ./runs/<timestamp>)."""
    learning_rate: float = 2e-4
    """Peak learning rate. Keep it below pre-training's (1e-5..5e-5 for full, 1e-4..3e-4 for LoRA)."""
    num_train_epochs: float = 3.0
    """Epochs over the training data. Few epochs guard against forgetting."""
    max_steps: int = -1
    """Stop after this many optimizer steps (-1: use epochs)."""
    per_device_train_batch_size: int = 8
    """Samples per device per step."""
    per_device_eval_batch_size: int = 8
    """Samples per device per evaluation step."""
    gradient_accumulation_steps: int = 1
    """Steps whose gradients are summed before one optimizer step."""
    warmup_ratio: float = 0.03
    """Fraction of steps with a linear learning-rate warm-up."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    lr_scheduler_type: str = "cosine"
    """Learning-rate schedule (linear, cosine, constant, constant_with_warmup, ...)."""
    logging_steps: int = 5
    """Log loss every N steps."""
    save_steps: int = 200
    """Checkpoint every N steps."""
    save_total_limit: int | None = 2
    """Keep at most this many checkpoints."""
    eval_steps: int | None = None
    """Evaluate every N steps (default: at the end only)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory."""
    compile: Literal["auto", "on", "off"] = "auto"
    """torch.compile each decoder layer for training (inductor; compiled kernels cached in the cache dir). auto: where it measured faster (see sftune.train.speed)."""
    seed: int = 42
    """Seed for data order, sampling and initialisation."""
    report_to: list[str] = Field(default_factory=lambda: ["tensorboard"])
    """Loggers (tensorboard, wandb, none, ...)."""
    resume: str | None = None
    """Resume from 'latest' or a checkpoint folder."""
    distributed: Distributed = "auto"
    """Under torchrun/accelerate launch: ddp, fsdp (accelerate's FSDP2, full shard) or deepspeed-zero2/3 (pip install 'sftune[deepspeed]'); auto: as launched (DDP). training_args win."""
    training_args: dict[str, Any] = Field(default_factory=dict)
    """Any other transformers.TrainingArguments field, passed through unchanged."""
    eval_questions: list[str] | None = None
    """Questions asked before and after training to show what changed (default: the bundled ones)."""
    eval_tools: str | None = None
    """JSON file of tool schemas offered with eval_questions, so the before/after answers show tool calls."""
    export: str | None = None
    """After training, also write GGUF: 'gguf' (f16) or 'gguf:QUANT' (e.g. gguf:q8_0), to OUTPUT/<name>-<quant>.gguf."""

    @field_validator("export")
    @classmethod
    def _export_spec(cls, v):
        if v is not None:
            from ..export.after_training import parse_export_spec

            parse_export_spec(v)  # a bad quant fails before training, not after it
        return v

    @field_validator("report_to", mode="before")
    @classmethod
    def _report_to_list(cls, v):
        return [v] if isinstance(v, str) else v


# Bases in reverse: pydantic orders inherited fields from the last base to the first (model first).
class SFTConfig(TrainingOptions, MethodOptions, DataOptions, ModelOptions):
    """Everything a run needs, flat (one YAML mapping, one flag per key): model + data + method + training options.

    >>> cfg = SFTConfig(model="default", data=["train.jsonl"], learning_rate=1e-4)
    >>> cfg.data[0].path, cfg.mask, cfg.method
    ('train.jsonl', 'assistant', 'lora')
    """

    group_name: ClassVar[str] = "run"
