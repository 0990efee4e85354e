"""What ``sftune eval`` measures and where it writes the reports."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from .base import OptionGroup
from .data import DataSource


class EvaluationOptions(OptionGroup):
    """The before/after report: held-out loss, answers side by side with scores, the forgetting check."""

    group_name: ClassVar[str] = "evaluation"

    base: str | None = None
    """Base model to compare against (default: the one the run recorded)."""
    data: list[DataSource] = Field(default_factory=list, json_schema_extra={"metavar": "PATH[,format=F]"})
    """Held-out data (any format; repeat for several)."""
    questions: str | None = None
    """Questions, answers optional (any data format, a .txt with one per line, or a JSON object of lists; default: the bundled eval questions)."""
    ask: bool = Field(default=True, json_schema_extra={"flag": "--no-questions"})
    """Generate answers to the questions (--no-questions: do not)."""
    general_text: str | None = None
    """Text for the forgetting check (default: the bundled replay.jsonl)."""
    forgetting: bool = Field(default=True, json_schema_extra={"flag": "--no-forgetting"})
    """Run the general-text perplexity check (--no-forgetting: skip it)."""
    forgetting_threshold: float | None = None
    """Warn when general-text perplexity rises by more than this fraction (default: 0.10)."""
    compare: bool = Field(default=True, json_schema_extra={"flag": "--no-compare"})
    """Compare with the base model (--no-compare: score the fine-tuned model alone)."""
    max_new_tokens: int = 256
    """Answer length limit."""
    batch_size: int = 8
    """Rows per forward pass."""
    output: str | None = None
    """Where to write eval.json/md/html (default: MODEL/eval for a folder, else ./eval)."""

    @field_validator("data", mode="before")
    @classmethod
    def _str_to_source(cls, v):
        if v is None:
            return []
        return [DataSource.spec(s) if isinstance(s, str) else s for s in ([v] if isinstance(v, (str, dict)) else v)]

    @model_validator(mode="after")
    def _check(self):
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be at least 1")
        return self
