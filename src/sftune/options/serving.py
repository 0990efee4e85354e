"""How ``sftune serve`` exposes a model over HTTP."""

from __future__ import annotations

from typing import ClassVar

from pydantic import model_validator

from .base import OptionGroup


class ServingOptions(OptionGroup):
    """The OpenAI-compatible server: address, key, name and request limits."""

    group_name: ClassVar[str] = "serving"

    host: str = "127.0.0.1"
    """Address to bind; 0.0.0.0 exposes it to the network."""
    port: int = 8000
    """TCP port."""
    api_key: str | None = None
    """Require 'Authorization: Bearer KEY' on every request (default: no key)."""
    served_model_name: str | None = None
    """Model id shown by /v1/models (default: the folder name)."""
    max_prompt_tokens: int | None = None
    """Longer prompts get a 400 error (default: the model's context length minus max_tokens_limit)."""
    max_tokens_limit: int = 2048
    """Requests asking for more max_tokens get a 400 error."""

    @model_validator(mode="after")
    def _check(self):
        if not 0 < self.port < 65536 or self.max_tokens_limit < 1 or (self.max_prompt_tokens is not None and self.max_prompt_tokens < 1):
            raise ValueError("port must be in 1..65535, max_tokens_limit and max_prompt_tokens >= 1")
        return self
