"""Options of the curation steps: filter, dedup, decontaminate, distill and best-of-K.

The dedup shingle length has one default rule, here: 3 for word shingles, 5 for character
shingles (a 3-character shingle matches almost any two texts of one language).

>>> DedupOptions().ngram, DedupOptions(shingle="char").ngram, DedupOptions(shingle="char", ngram=7).ngram
(3, 5, 7)

Distill and best-of-K are :class:`~sftune.options.SamplingOptions` with their own defaults
(longer answers, a fixed seed so a resumed run writes the same rows), so every sampling value
is checked by that one type:

>>> BestOfKOptions(k=3).num_return_sequences, BestOfKOptions().temperature, DistillOptions().max_new_tokens
(3, 0.8, 512)
>>> BestOfKOptions(k=3, temperature=0)
Traceback (most recent call last):
...
sftune.errors.ConfigError: invalid BestOfKOptions:
  num_return_sequences > 1 needs sampling: greedy decoding gives the same answer every time
  fix: set temperature to 0.7 (or any value > 0)
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator

from ..errors import ConfigError
from .base import OptionGroup
from .sampling import SamplingOptions, sampling_field

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


#: Language codes -> the scripts their letters are written in. Script names work too (lang: cyrillic).
LANG_SCRIPTS: dict[str, set[str]] = {
    "zh": {"han"}, "ja": {"han", "hiragana", "katakana"}, "ko": {"hangul", "han"},
    "en": {"latin"}, "fr": {"latin"}, "de": {"latin"}, "es": {"latin"}, "it": {"latin"}, "pt": {"latin"},
    "nl": {"latin"}, "pl": {"latin"}, "tr": {"latin"}, "vi": {"latin"}, "id": {"latin"},
    "ru": {"cyrillic"}, "uk": {"cyrillic"}, "bg": {"cyrillic"}, "el": {"greek"}, "ar": {"arabic"},
    "fa": {"arabic"}, "he": {"hebrew"}, "hi": {"devanagari"}, "th": {"thai"},
    "cjk": {"han", "hiragana", "katakana", "hangul"},
}
SCRIPTS = ("latin", "cyrillic", "greek", "arabic", "hebrew", "devanagari", "thai", "han", "hiragana", "katakana", "hangul")


def lang_scripts(lang: str) -> set[str]:
    """The scripts a language code (or script name) is written in.

    >>> sorted(lang_scripts("ja")), lang_scripts("Cyrillic")
    (['han', 'hiragana', 'katakana'], {'cyrillic'})
    """
    key = lang.lower()
    if key in LANG_SCRIPTS:
        return LANG_SCRIPTS[key]
    if key in SCRIPTS:
        return {key}
    raise ConfigError(
        f"unknown language or script {lang!r}. Known languages: {', '.join(sorted(LANG_SCRIPTS))}; "
        f"scripts: {', '.join(SCRIPTS)}", field="lang",
    )


class FilterOptions(OptionGroup):
    """Which filter rules drop a row; None/False switches a rule off.

    Token bounds count tokens of the model's tokenizer: ``*_tokens`` over the whole conversation
    rendered with the chat template (what training sees), ``*_answer_tokens`` over the answer text.

    >>> FilterOptions(repeats_prompt=0).repeats_prompt is None, FilterOptions(max_tokens=2048).needs_tokenizer
    (True, True)
    """

    group_name: ClassVar[str] = "filter"

    empty_answer: bool = True
    """Drop rows whose answer is empty or whitespace only (or that have no answer at all)."""
    repeats_prompt: float | None = 0.9
    """Drop answers equal to the prompt (normalised), or with at least this share of their word 3-grams copied from the prompt; 0 = off."""
    repetition: float | None = None
    """Drop answers where at least this share of word n-grams repeat an earlier one (0.3 is a good start)."""
    repetition_ngram: int = 3
    """n for the repetition rule (CJK characters count as words)."""
    lang: str | None = Field(default=None, json_schema_extra={"metavar": "LANG"})
    """Required language or script of the answer: zh, ja, ko, en/fr/... (latin), ru (cyrillic), ..., or a script name."""
    min_lang_share: float = 0.5
    """Share of the answer's letters (outside code blocks) that must be in the script of lang."""
    truncated: bool = False
    """Drop answers cut off mid-sentence (no terminal punctuation, unclosed code block)."""
    min_tokens: int | None = None
    """Drop rows with fewer tokens than N (whole conversation with the chat template, model's tokenizer)."""
    max_tokens: int | None = None
    """Drop rows with more tokens than N (whole conversation with the chat template, model's tokenizer)."""
    min_answer_tokens: int | None = None
    """Drop rows whose answer has fewer tokens than N."""
    max_answer_tokens: int | None = None
    """Drop rows whose answer has more tokens than N."""
    predicate: str | None = Field(default=None, json_schema_extra={"metavar": "MODULE:FUNCTION"})
    """Your rule: called with the Conversation, returns True to keep the row (module name or path/to/file.py)."""

    @field_validator("repeats_prompt", mode="before")
    @classmethod
    def _zero_is_off(cls, v):
        return None if v == 0 else v

    @field_validator("lang")
    @classmethod
    def _known_lang(cls, v):
        if v is not None:
            lang_scripts(v)  # fail at start-up, not on row 1000
        return v

    @model_validator(mode="after")
    def _check(self):
        for name in ("repeats_prompt", "repetition", "min_lang_share"):
            v = getattr(self, name)
            if v is not None and not 0 < v <= 1:
                raise ValueError(f"{name} must be a share in (0, 1], got {v}")
        if self.repetition_ngram < 1:
            raise ValueError(f"repetition_ngram must be >= 1, got {self.repetition_ngram}")
        for name in ("min_tokens", "max_tokens", "min_answer_tokens", "max_answer_tokens"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        return self

    @property
    def needs_tokenizer(self) -> bool:
        return any(getattr(self, k) is not None for k in ("min_tokens", "max_tokens", "min_answer_tokens", "max_answer_tokens"))


class GeneratingOptions(SamplingOptions):
    """Sampling for the curation steps that call a model and write a resumable file."""

    max_new_tokens: int = sampling_field("max_new_tokens", 512)
    seed: int | None = sampling_field("seed", 0)

    @model_validator(mode="after")
    def _no_stop(self):
        # Batched generation ends answers at EOS and max_new_tokens only; a stop string would be ignored.
        if self.stop:
            raise ValueError("stop strings are not applied by batched generation: leave stop out "
                             "(cut the answers afterwards, or filter them with `sftune curate filter`)")
        return self


class DistillOptions(GeneratingOptions):
    """A teacher model writes the answers (greedy unless temperature > 0)."""

    group_name: ClassVar[str] = "distill"

    batch_size: int = 8
    """Prompts per forward pass."""
    keep_truncated: bool = False
    """Keep answers cut by max_new_tokens (meta.finish_reason = 'length') instead of dropping and counting them."""
    chunk: int | None = None
    """Prompts generated between two writes to the output (default: 4 batches)."""

    @model_validator(mode="after")
    def _check_distill(self):
        if self.num_return_sequences != 1:
            raise ValueError(f"num_return_sequences must be 1 for distill (one answer per prompt), got {self.num_return_sequences}\n"
                             "  fix: use `sftune curate best-of-k -k N` to sample N answers and keep the best")
        for name in ("batch_size", "chunk"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        return self


class BestOfKOptions(GeneratingOptions):
    """K sampled answers per prompt, the best one by a reward kept (rejection sampling)."""

    group_name: ClassVar[str] = "best_of_k"

    temperature: float = sampling_field("temperature", 0.8)
    num_return_sequences: int = Field(default=4, validation_alias=AliasChoices("k", "num_return_sequences", "n"),
                                      json_schema_extra={"flag": "--k"})
    """K (num_return_sequences): candidates sampled per prompt; the best-scored one is kept."""
    keep_scores: bool = False
    """Store every candidate with its score and finish_reason in meta.candidates."""
    drop_truncated: bool = False
    """Candidates cut by max_new_tokens cannot win; a prompt whose K candidates are all cut is skipped (and counted)."""

    @property
    def k(self) -> int:
        return self.num_return_sequences
