"""Which data, and how rows become training sequences."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from .base import OptionGroup

Format = Literal["auto", "alpaca", "sharegpt", "messages", "prompt_completion", "text"]
MaskPolicy = Literal["assistant", "last", "completion", "all"]


class DataSource(OptionGroup):
    """One input dataset. A bare string in ``data:`` is shorthand for ``{path: ...}``.

    >>> DataSource.parse("mix.jsonl,share=0.15,format=text")
    DataSource(path='mix.jsonl', format='text', columns=None, split='train', weight=None, share=0.15)
    """

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

    @staticmethod
    def spec(text: str) -> dict:
        """``PATH[,share=0.15][,weight=2][,format=text][,split=train]`` (the ``--data`` syntax) -> a dict."""
        from ..errors import ConfigError

        path, *opts = text.split(",")
        src: dict = {"path": path}
        for o in opts:
            k, sep, v = o.partition("=")
            if not sep or k not in ("share", "weight", "format", "split"):
                raise ConfigError(f"--data {text!r}: options after the path are share=, weight=, format=, split= (got {o!r})",
                                  field="data", fix="write --data PATH,share=0.15 (no spaces)")
            try:
                src[k] = float(v) if k in ("share", "weight") else v
            except ValueError:
                raise ConfigError(f"--data {text!r}: {k} must be a number, got {v!r}", field="data") from None
        return src

    @classmethod
    def parse(cls, text: str) -> "DataSource":
        """A source from the ``--data`` syntax (see :meth:`spec`)."""
        return cls(**cls.spec(text))


class DataOptions(OptionGroup):
    """Which data to train on and how rows become token sequences with labels."""

    group_name: ClassVar[str] = "data"

    data: list[DataSource] = Field(default_factory=list, json_schema_extra={"metavar": "PATH[,share=S]"})
    """Training data: one or more files/folders/hub names (repeat --data for several)."""
    eval_data: list[DataSource] = Field(default_factory=list, json_schema_extra={"metavar": "PATH[,share=S]"})
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
    template_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Variables passed to the chat template in training and inference alike, e.g. enable_thinking=false (saved with the model)."""
    reasoning: Literal["keep", "mask", "inline", "drop"] = "keep"
    """Assistant reasoning (reasoning_content): keep (train it), mask (show it, train the rest of the turn), inline (write it into the content as <think>...</think>), drop (remove it)."""
    tool_format: str | dict[str, Any] | None = None
    """How the chat template writes tool calls and reasoning, to read them back out of generated text: none (default: detected from the template), hermes, qwen3, llama3, mistral, think, or a declared format {call_start, call_end, reasoning_start, ...}. Saved with the model for chat and serve."""
    @field_validator("tool_format", mode="before")
    @classmethod
    def _known_tool_format(cls, v):
        if isinstance(v, str) and v.lstrip().startswith("{"):
            import yaml

            v = yaml.safe_load(v)  # a declared format given on the command line as a mapping
        if v is not None:
            from ..infer.toolformat import ToolFormatError, resolve_format

            try:
                resolve_format(v)
            except ToolFormatError as e:
                raise ValueError(str(e)) from None
        return v

    num_proc: int = Field(1, ge=1)
    """Processes that read and tokenize the data (prepare and train's data step): sources, and large .jsonl files cut by line ranges, are shared between them (data under 8 MiB stays in one process). Rows and report are the same as with 1."""

    packing: bool = False
    """Pack several samples into each row of max_length tokens (no attention across samples); the batch size then counts rows."""
    packed_micro_batch: int | None = None
    """With packing: rows per forward/backward pass; the rest of the batch is accumulated (same update, less memory). Default: 1 on CPU, the whole batch on GPU."""
    group_by_length: bool = False
    """Batch samples of similar length together to cut padding (when not packing)."""
    streaming: bool = False
    """Read, check, tokenize (and pack) the training data lazily while training, for data larger than memory; needs max_steps. Bad rows are counted as they are met; eval_data is still prepared in memory."""

    @field_validator("data", "eval_data", mode="before")
    @classmethod
    def _str_to_source(cls, v):
        if v is None:
            return []
        if isinstance(v, (str, dict)):
            v = [v]
        return [{"path": s} if isinstance(s, str) else s for s in v]

    @field_validator("max_length")
    @classmethod
    def _positive_length(cls, v):
        if v < 8:
            raise ValueError(f"max_length must be at least 8, got {v}")
        return v

    def source_format(self, src: DataSource) -> str:
        """The format of ``src``: its own, else this config's default."""
        return src.format if src.format != "auto" else self.format
