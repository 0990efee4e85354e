"""Showing a reply with reasoning and tool calls in a terminal (``sftune chat``).

The reasoning is shown apart from the answer (dimmed, under a ``thinking`` label), and each tool
call as a call, ``get_weather(city="Paris")``, never as the raw markup the model wrote.

>>> import io
>>> out = io.StringIO()
>>> show = ReplyPrinter(out, color=False)
>>> for d in [{"reasoning_content": "Needs the tool."}, {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
...           "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}]:
...     show(d)
>>> show.close()
>>> print(out.getvalue(), end="")
thinking: Needs the tool.
-> call get_weather(city="Paris")
"""

from __future__ import annotations

import json
from typing import TextIO

DIM, CYAN, RESET = "\x1b[2m", "\x1b[36m", "\x1b[0m"


def format_call(function: dict) -> str:
    """A call as one readable line: ``name(key=json value, ...)``; arguments that are not a JSON object as given.

    >>> format_call({"name": "get_weather", "arguments": '{"city": "北京", "unit": "celsius"}'})
    'get_weather(city="北京", unit="celsius")'
    >>> format_call({"name": "f", "arguments": "not json"})
    'f(not json)'
    """
    raw = function.get("arguments") or "{}"
    try:
        args = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        return f"{function.get('name', '?')}({raw})"
    inner = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in args.items())
    return f"{function.get('name', '?')}({inner})"


class ReplyPrinter:
    """Write streamed deltas (:class:`sftune.infer.toolcalls.ToolCallParser`'s) to ``out`` as they come.

    ``color`` defaults to whether ``out`` is a terminal; without it, sections are told apart by
    their labels alone.
    """

    def __init__(self, out: TextIO, color: bool | None = None):
        self.out = out
        self.color = out.isatty() if color is None and hasattr(out, "isatty") else bool(color)
        self.section: str | None = None  # what the current line holds: reasoning, content or call
        self.line_open = False

    def _paint(self, code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if self.color else text

    def _start(self, section: str) -> None:
        if self.section != section and self.line_open:
            self.out.write("\n")
            self.line_open = False
        self.section = section

    def __call__(self, delta: dict) -> None:
        if delta.get("reasoning_content"):
            first = self.section != "reasoning"
            self._start("reasoning")
            self.out.write(self._paint(DIM, ("thinking: " if first else "") + delta["reasoning_content"]))
            self.line_open = True
        if delta.get("content"):
            self._start("content")
            self.out.write(delta["content"])
            self.line_open = True
        for call in delta.get("tool_calls") or []:
            self._start("call")
            if self.line_open:
                self.out.write("\n")
            self.out.write(self._paint(CYAN, "-> call " + format_call(call.get("function") or {})))
            self.line_open = True
        if hasattr(self.out, "flush"):  # show each piece as it arrives
            self.out.flush()

    def close(self) -> None:
        """End the last line."""
        if self.line_open:
            self.out.write("\n")
            self.line_open = False
        self.section = None
