"""What a model is offered at inference: tools, the template's variables, how replies write calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from ..errors import ConfigError
from .base import OptionGroup


class ToolUseOptions(OptionGroup):
    """Tools offered to the model and the chat template's variables (chat, generate, serve).

    ``template_kwargs`` and ``tool_format`` default to what training saved beside the model
    (``sftune_chat.json``); given ones win.
    """

    group_name: ClassVar[str] = "tools"

    tools: str | None = None
    """JSON file holding a list of tool schemas ({type: function, function: {name, description, parameters}}) offered to the model in every prompt."""
    template_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Variables for the chat template, e.g. enable_thinking=false (default: those saved with the model in training)."""
    tool_format: str | None = None
    """How replies write tool calls and reasoning: hermes, qwen3, llama3, mistral, think, none (default: saved with the model, else detected from the template)."""

    def load_tools(self) -> list[dict] | None:
        """The tool schemas of the ``tools`` file, in OpenAI form; errors name the file and the fix."""
        if self.tools is None:
            return None
        from ..data.toolcalls import ToolCallError, normalize_tools

        path = Path(self.tools)
        if not path.is_file():
            raise ConfigError(f"--tools {path}: no such file\n  fix: give a JSON file holding a list of tool schemas", field="tools")
        try:
            return normalize_tools(path.read_text(encoding="utf-8"))
        except ToolCallError as e:
            raise ConfigError(f"--tools {path}: {e}", field="tools") from None

    def settings_for(self, model: str) -> dict:
        """``tools``, ``template_kwargs`` and ``tool_format`` for ``model``: saved settings, then these."""
        from ..model.chat_settings import read_chat_settings

        saved = read_chat_settings(model)
        return {"tools": self.load_tools(),
                "template_kwargs": {**saved["template_kwargs"], **self.template_kwargs},
                "tool_format": self.tool_format if self.tool_format is not None else saved["tool_format"]}


__all__ = ["ToolUseOptions"]
