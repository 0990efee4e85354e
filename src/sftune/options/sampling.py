"""How answers are sampled: one type for chat, generate, serve, distill and best-of-K.

Every parameter is checked here (so the CLI, YAML, Python and the server refuse the same
values with the same message) and applied by :func:`sftune.infer.generate.generation_kwargs`:

>>> s = SamplingOptions(temperature=0.7, frequency_penalty=0.5, logit_bias={"42": -100}, stop="\\n\\n")
>>> s.logit_bias, s.stop
({42: -100.0}, ['\\n\\n'])
>>> SamplingOptions(top_p=0)
Traceback (most recent call last):
...
sftune.errors.ConfigError: invalid SamplingOptions:
  top_p must be in (0, 1], got 0.0
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import AliasChoices, Field, field_validator, model_validator

from ..errors import ConfigError
from .base import OptionGroup

#: OpenAI's limit on stop sequences; longer lists are refused rather than cut.
MAX_STOP = 4


class SamplingOptions(OptionGroup):
    """How answers are generated: greedy or sampled, length, penalties, stop strings, seed, number of answers."""

    group_name: ClassVar[str] = "sampling"

    temperature: float = 0.0
    """Randomness of sampling; 0 = greedy, always the most likely token."""
    top_p: float = 1.0
    """Nucleus sampling: sample only from the smallest set of tokens whose probability adds up to P."""
    top_k: int = 0
    """Sample only from the K most likely tokens; 0 = no limit."""
    max_new_tokens: int = 256
    """Longest answer in tokens; an answer cut here ends with finish_reason 'length'."""
    repetition_penalty: float = 1.0
    """> 1 makes tokens already in the text (prompt included) less likely; 1 = off."""
    frequency_penalty: float = 0.0
    """OpenAI's: subtract this times the number of times a token already appears in the answer from its logit; in [-2, 2]."""
    presence_penalty: float = 0.0
    """OpenAI's: subtract this from the logit of every token already in the answer; in [-2, 2]."""
    logit_bias: dict[int, float] | None = None
    """Token id -> value in [-100, 100] added to its logit (-100 bans it, 100 forces it)."""
    seed: int | None = None
    """Random seed for sampling; makes sampled runs (and resumed ones) repeatable."""
    num_return_sequences: int = Field(default=1, validation_alias=AliasChoices("num_return_sequences", "n"))
    """Answers per prompt (needs temperature > 0: greedy gives the same answer every time)."""
    stop: list[str] | None = None
    """Strings that end the answer (not included in it); at most 4."""

    @field_validator("logit_bias", mode="before")
    @classmethod
    def _token_ids(cls, v):
        if v is None:
            return v
        if not isinstance(v, dict):
            raise ValueError("logit_bias must map token ids to numbers, e.g. {\"50256\": -100}")
        out = {}
        for k, b in v.items():
            if isinstance(k, bool) or not (isinstance(k, int) or (isinstance(k, str) and k.strip().isdigit())):
                raise ValueError(f"logit_bias keys are token ids (non-negative integers), got {k!r}")
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not -100 <= b <= 100:
                raise ValueError(f"logit_bias[{k}] must be a number in [-100, 100], got {b!r}")
            out[int(k)] = float(b)
        return out

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, v):
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _check(self):
        checks = [
            ("temperature", self.temperature >= 0, "must be >= 0"),
            ("top_p", 0 < self.top_p <= 1, "must be in (0, 1]"),
            ("top_k", self.top_k >= 0, "must be >= 0"),
            ("max_new_tokens", self.max_new_tokens >= 1, "must be >= 1"),
            ("repetition_penalty", self.repetition_penalty > 0, "must be > 0"),
            ("frequency_penalty", -2 <= self.frequency_penalty <= 2, "must be in [-2, 2]"),
            ("presence_penalty", -2 <= self.presence_penalty <= 2, "must be in [-2, 2]"),
            ("num_return_sequences", self.num_return_sequences >= 1, "must be >= 1"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"{name} {rule}, got {getattr(self, name)}")
        if self.stop is not None and len(self.stop) > MAX_STOP:
            raise ValueError(f"stop has {len(self.stop)} sequences; at most {MAX_STOP} are allowed")
        if self.num_return_sequences > 1 and self.temperature == 0:
            raise ValueError("num_return_sequences > 1 needs sampling: greedy decoding gives the same answer every time\n"
                             "  fix: set temperature to 0.7 (or any value > 0)")
        return self

    def check_vocab(self, vocab_size: int) -> None:
        """Refuse ``logit_bias`` keys that are not token ids of a vocabulary of ``vocab_size``."""
        bad = sorted(k for k in (self.logit_bias or {}) if k >= vocab_size)
        if bad:
            raise ConfigError(f"logit_bias: token id {bad[0]} is outside the model's vocabulary (ids 0..{vocab_size - 1})",
                              field="logit_bias", fix="use ids from the model's tokenizer, e.g. tokenizer.encode('word')")

    def generation_args(self) -> dict:
        """The keyword arguments :func:`sftune.infer.generate.generation_kwargs` takes (no seed or stop).

        Only the sampling fields: a command's options built on this type (distill's batch size)
        stay out.
        """
        return self.model_dump(include=set(SamplingOptions.model_fields) - {"seed", "stop"})


def sampling_field(name: str, default):
    """A :class:`SamplingOptions` field with a command's own default: the same help and aliases.

    >>> sampling_field("max_new_tokens", 512).description
    "Longest answer in tokens; an answer cut here ends with finish_reason 'length'."
    """
    f = SamplingOptions.model_fields[name]
    return Field(default=default, description=f.description, validation_alias=f.validation_alias)


#: Chat's defaults where they differ from the type's (chat samples; generate and serve are greedy).
CHAT_DEFAULTS = {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 512, "repetition_penalty": 1.1}
