"""The forgetting check: perplexity on general text before and after fine-tuning.

Fine-tuning on a narrow set can make a model worse at everything else ("catastrophic
forgetting"). A cheap signal is the perplexity of plain, general text: if the fine-tuned model
finds ordinary encyclopedic prose much less likely than its base did, it has drifted. The
default text is the bundled ``resources/replay.jsonl`` (short hand-written paragraphs in
English and Chinese, ``{"text": ...}`` rows); any data file works (``--general-text``).

Every token of the text is scored (mask ``all``; raw text rows are trained on every token
anyway), with the same token-level loss as the held-out check.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .heldout import LossResult, prepare_rows, token_loss

log = logging.getLogger("sftune")

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
DEFAULT_GENERAL_TEXT = RESOURCES / "replay.jsonl"
#: Warn when general-text perplexity rises by more than this fraction (0.10 = 10 %).
DEFAULT_THRESHOLD = 0.10


def relative_change(before: float, after: float) -> float:
    """``(after - before) / before``.

    >>> relative_change(10.0, 12.5)
    0.25
    """
    return (after - before) / before


@dataclass
class Forgetting:
    """Perplexity on general text for the base and the fine-tuned model."""

    data: str
    base: LossResult
    fine_tuned: LossResult
    threshold: float = DEFAULT_THRESHOLD

    @property
    def relative_change(self) -> float:
        """Relative change of perplexity, fine-tuned vs base (+0.05 = 5 % higher after)."""
        return relative_change(self.base.perplexity, self.fine_tuned.perplexity)

    @property
    def warning(self) -> str | None:
        """A sentence when perplexity rose more than ``threshold``, else None."""
        if self.relative_change <= self.threshold:
            return None
        return (
            f"perplexity on general text rose {self.relative_change:+.1%} ({self.base.perplexity:.2f} -> "
            f"{self.fine_tuned.perplexity:.2f}), more than {self.threshold:.0%}: the model may have forgotten "
            "general skills. Try fewer epochs, a lower learning rate, LoRA instead of full fine-tuning, or mix in "
            "replay data (--data src/sftune/resources/replay.jsonl,share=0.15)."
        )

    def to_dict(self) -> dict:
        return {
            "data": self.data,
            "base": self.base.to_dict(),
            "fine_tuned": self.fine_tuned.to_dict(),
            "relative_change": self.relative_change,
            "threshold": self.threshold,
            "warning": self.warning,
        }


def general_text_config(cfg):
    """``cfg`` for general text: every token scored, no system prompt added, same template and length."""
    return cfg.model_copy(update={"mask": "all", "system_prompt": None, "format": "auto"})


def prepare_general_text(cfg, tokenizer, path: str | Path | None = None, *, use_cache: bool = True):
    """Prepare the general text once (the result is scored by both models)."""
    from ..config import DataSource

    src = DataSource(path=str(path or DEFAULT_GENERAL_TEXT))
    return prepare_rows(general_text_config(cfg), tokenizer, [src], use_cache=use_cache)


def general_perplexity(model, tokenizer, prepared, *, batch_size: int = 8) -> LossResult:
    """Token-level loss/perplexity of ``model`` on prepared general text."""
    from ..model.padding import pad_id

    return token_loss(model, prepared.dataset, pad_token_id=pad_id(tokenizer), batch_size=batch_size)
