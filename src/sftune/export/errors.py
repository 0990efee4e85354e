"""The one error type of ``sftune export``: what cannot be exported, and how to fix it."""

from __future__ import annotations


class ExportError(RuntimeError):
    """The model, tokenizer, adapter or output cannot be exported as asked; the message says what to do."""
