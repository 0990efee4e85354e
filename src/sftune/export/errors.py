"""The one error type of ``sftune export``: what cannot be exported, and how to fix it."""

from __future__ import annotations

from ..errors import SftuneError


class ExportError(SftuneError, RuntimeError):
    """The model, tokenizer, adapter or output cannot be exported as asked; the message says what to do."""
