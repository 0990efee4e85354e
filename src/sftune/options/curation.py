"""Options of the curation steps whose settings are plain values (dedup, decontaminate).

The dedup shingle length has one default rule, here: 3 for word shingles, 5 for character
shingles (a 3-character shingle matches almost any two texts of one language).

>>> DedupOptions().ngram, DedupOptions(shingle="char").ngram, DedupOptions(shingle="char", ngram=7).ngram
(3, 5, 7)
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from .base import OptionGroup

#: Default shingle length per shingle kind.
DEFAULT_NGRAM = {"word": 3, "char": 5}


class DedupOptions(OptionGroup):
    """Exact and near-duplicate removal (MinHash/LSH); the first occurrence is kept."""

    group_name: ClassVar[str] = "dedup"

    exact: bool = Field(default=True, json_schema_extra={"flag": "--no-exact"})
    """Remove exact duplicates of the normalised text; --no-exact skips them."""
    near: bool = Field(default=True, json_schema_extra={"flag": "--no-near"})
    """Remove near duplicates (MinHash/LSH); --no-near skips them."""
    threshold: float = 0.8
    """Jaccard similarity of the shingle sets at which two rows count as near duplicates, in (0, 1]."""
    key: Literal["conversation", "prompt", "answer"] = "conversation"
    """What is compared: the whole conversation, the prompt only, or the answer only."""
    shingle: Literal["word", "char"] = "word"
    """word (n words; CJK characters count as words) or char (n characters)."""
    ngram: int | None = None
    """Shingle length (default: 3 words or 5 characters)."""
    num_perm: int = 128
    """MinHash permutations (more: a finer similarity estimate, slower)."""
    seed: int = 0
    """MinHash seed (fixed: same input, same output)."""

    @model_validator(mode="after")
    def _check(self):
        if self.ngram is None:
            # object.__setattr__: validate_assignment would re-enter this validator.
            object.__setattr__(self, "ngram", DEFAULT_NGRAM[self.shingle])
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.ngram < 1 or self.num_perm < 2:
            raise ValueError(f"ngram must be >= 1 and num_perm >= 2, got {self.ngram} and {self.num_perm}")
        return self


class DecontaminateOptions(OptionGroup):
    """Removal of training rows that share long n-grams with an evaluation set."""

    group_name: ClassVar[str] = "decontaminate"

    ngram: int = 13
    """n-gram length in words (characters for CJK text)."""
    min_short: int = 8
    """Evaluation fields with min_short..ngram-1 words are matched whole; shorter ones are ignored."""
    fields: Literal["prompt", "answer", "both"] = "both"
    """Which training fields are checked: prompt, answer or both."""

    @model_validator(mode="after")
    def _check(self):
        if self.ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {self.ngram}")
        return self
