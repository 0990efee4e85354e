"""Read generated assistant text back into ``content``, ``reasoning_content`` and ``tool_calls``.

One incremental parser serves both the streamed and the whole-text case, so they cannot
disagree: :func:`parse_output` is the parser fed the whole text at once. Fed deltas, it emits
OpenAI-style deltas as soon as they are certain, holding back only text that may still become a
marker (``<tool_c`` may become ``<tool_call>``) and the body of a call until it is complete (its
JSON is checked before anything is sent). For formats that read bare JSON calls (Llama 3.1,
Mistral) a reply opening with ``{`` or ``[`` is held to the end too, since it may be a call. A call that is not valid JSON stays in ``content``,
marker and all, and a line in ``problems`` says why, so nothing the model wrote is lost.

Whitespace: ``content`` and ``reasoning_content`` are stripped at both ends (a template writes
``</think>\\n\\n`` before the answer), and ``content`` is ``None`` when the reply only calls tools,
as OpenAI's API returns it. With no format (``fmt=None``) the text passes through unchanged.

>>> from sftune.infer.toolformat import BUILTIN_FORMATS
>>> ids = iter(["call_1", "call_2"]).__next__
>>> out = parse_output(
...     '<think>\\nParis, so Celsius.\\n</think>\\n\\n<tool_call>\\n{"name": "get_weather", '
...     '"arguments": {"city": "Paris"}}\\n</tool_call>', BUILTIN_FORMATS["qwen3"], make_id=ids)
>>> out.content, out.reasoning_content
(None, 'Paris, so Celsius.')
>>> out.tool_calls
[{'id': 'call_1', 'type': 'function', 'function': {'name': 'get_weather', 'arguments': '{"city": "Paris"}'}}]
>>> out.finish_reason("stop")
'tool_calls'
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

from .toolformat import ToolFormat, new_call_id, parse_calls

CONTENT, REASONING = "content", "reasoning_content"


@dataclass
class ParsedMessage:
    """An assistant reply read back from generated text."""

    content: str | None
    reasoning_content: str | None = None
    tool_calls: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Why some markup was kept as text (e.g. a call that is not valid JSON); empty when all was read."""

    def message(self) -> dict:
        """The OpenAI ``choices[0].message``: keys only for what the reply has.

        >>> ParsedMessage("Hi").message()
        {'role': 'assistant', 'content': 'Hi'}
        """
        msg = {"role": "assistant", "content": self.content}
        if self.reasoning_content is not None:
            msg["reasoning_content"] = self.reasoning_content
        if self.tool_calls:
            msg["tool_calls"] = self.tool_calls
        return msg

    def finish_reason(self, generation_reason: str) -> str:
        """OpenAI's ``finish_reason``: ``tool_calls`` when a reply that ended by itself called tools.

        >>> ParsedMessage(None, tool_calls=[{}]).finish_reason("stop"), ParsedMessage("x").finish_reason("length")
        ('tool_calls', 'length')
        """
        return "tool_calls" if self.tool_calls and generation_reason == "stop" else generation_reason


def _partial_marker(text: str, markers) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of a marker (must be held back).

    >>> _partial_marker("Sure <tool_c", ["<tool_call>", "<think>"]), _partial_marker("a < b", ["<think>"])
    (7, 0)
    """
    hold = 0
    for m in markers:
        for k in range(min(len(m) - 1, len(text)), hold, -1):
            if text.endswith(m[:k]):
                hold = k
                break
    return hold


class ToolCallParser:
    """Incremental reader of one generation: ``feed(delta)`` and ``finish()`` return lists of deltas.

    A delta is ``{"content": str}``, ``{"reasoning_content": str}`` or ``{"tool_calls": [{"index",
    "id", "type": "function", "function": {"name", "arguments"}}]}`` (each call whole, its arguments
    a JSON string). ``in_reasoning``: the prompt already opened the reasoning block
    (:func:`prompt_opens_reasoning`), so the text starts inside it. A forced call prefix
    (:func:`sftune.infer.toolrequest.forced_prefix`) is fed first, like generated text.

    >>> from sftune.infer.toolformat import BUILTIN_FORMATS
    >>> p = ToolCallParser(BUILTIN_FORMATS["hermes"], make_id=lambda: "call_0")
    >>> p.feed("Let me check. <tool_c"), p.feed('all>{"name": "f", "arguments": {}}</tool_call>')
    ([{'content': 'Let me check.'}], [{'tool_calls': [{'index': 0, 'id': 'call_0', 'type': 'function', 'function': {'name': 'f', 'arguments': '{}'}}]}])
    """

    def __init__(self, fmt: ToolFormat | None, *, in_reasoning: bool = False, make_id: Callable[[], str] = new_call_id):
        self.fmt, self.make_id = fmt, make_id
        self.state = "reasoning" if in_reasoning and fmt is not None and fmt.reasoning_start else "text"
        self.pending = ""  # text received but not yet given to a channel
        self.bare_ok = bool(fmt and fmt.bare_json)  # a reply may still turn out to be bare call JSON
        self.parts: dict[str, list[str]] = {CONTENT: [], REASONING: []}
        self._started = {CONTENT: False, REASONING: False}  # non-space text was emitted
        self._space = {CONTENT: "", REASONING: ""}  # trailing whitespace held until more text follows
        self.tool_calls: list[dict] = []
        self.problems: list[str] = []
        self.finished = False

    # -- public -------------------------------------------------------------------------------------
    def feed(self, text: str) -> list[dict]:
        if self.finished:
            raise RuntimeError("feed() after finish(): start a new ToolCallParser for a new generation")
        out: list[dict] = []
        if self.fmt is None:
            if text:
                self.parts[CONTENT].append(text)
                out.append({CONTENT: text})
            return out
        self.pending += text
        self._advance(out, final=False)
        return out

    def finish(self) -> list[dict]:
        """Flush at the end of generation: held text, and a call whose JSON ran to the end."""
        if self.finished:
            return []
        out: list[dict] = []
        if self.fmt is not None:
            self._advance(out, final=True)
        self.finished = True
        return out

    def result(self) -> ParsedMessage:
        """Everything emitted so far as one message (call after :meth:`finish`)."""
        content = "".join(self.parts[CONTENT])
        if self.fmt is not None and not content:
            content = None if self.tool_calls else ""
        reasoning = "".join(self.parts[REASONING]) or None
        return ParsedMessage(content, reasoning, list(self.tool_calls), list(self.problems))

    # -- the state machine: text -> reasoning | call | bare ------------------------------------------
    def _advance(self, out: list[dict], final: bool) -> None:
        fmt = self.fmt
        while True:
            if self.state == "text":
                if self.bare_ok and not self._started[CONTENT] and not self.tool_calls:
                    rest = self.pending.lstrip()
                    if rest[:1] in ("{", "["):  # may be a bare JSON call (Llama 3.1): hold all of it
                        self.state, self.pending = "bare", rest
                        continue
                found = [(i, m, nxt) for m, nxt in ((fmt.reasoning_start, "reasoning"), (fmt.call_start, "call"))
                         if m and (i := self.pending.find(m)) >= 0]
                if found:
                    i, m, nxt = min(found)
                    self._emit(out, CONTENT, self.pending[:i])
                    self.pending, self.state = self.pending[i + len(m):], nxt
                    continue
                hold = 0 if final else _partial_marker(self.pending, [m for m in (fmt.reasoning_start, fmt.call_start) if m])
                self._emit(out, CONTENT, self.pending[: len(self.pending) - hold])
                self.pending = self.pending[len(self.pending) - hold:]
                return
            if self.state == "reasoning":
                i = self.pending.find(fmt.reasoning_end)
                if i >= 0:
                    self._emit(out, REASONING, self.pending[:i])
                    self.pending, self.state = self.pending[i + len(fmt.reasoning_end):], "text"
                    continue
                hold = 0 if final else _partial_marker(self.pending, [fmt.reasoning_end])
                self._emit(out, REASONING, self.pending[: len(self.pending) - hold])  # unclosed at the end: still reasoning
                self.pending = self.pending[len(self.pending) - hold:]
                return
            if self.state == "call":
                i = self.pending.find(fmt.call_end) if fmt.call_end else -1
                if i >= 0:
                    body = self.pending[:i]
                    self.pending, self.state = self.pending[i + len(fmt.call_end):], "text"
                    self._close_call(out, body, fmt.call_start + body + fmt.call_end, "")
                    continue
                if final:  # no end marker: the JSON ran to the end (Mistral), or generation stopped inside it
                    body, self.pending, self.state = self.pending, "", "text"
                    self._close_call(out, body, fmt.call_start + body, "unterminated " if fmt.call_end else "")
                return
            # "bare": the whole reply so far is JSON-like; decide at the end
            if not final:
                return
            calls = parse_calls(self.pending, fmt, bare=True)
            if isinstance(calls, list):
                self._add_calls(out, calls)
                self.pending = ""
                return
            self.state, self.bare_ok = "text", False  # ordinary JSON answer: read it as text
            continue

    def _close_call(self, out: list[dict], body: str, raw: str, how: str) -> None:
        calls = parse_calls(body, self.fmt)
        if isinstance(calls, str):
            self.problems.append(f"{how}{self.fmt.name} tool call kept as text: {calls}")
            self._emit(out, CONTENT, raw)
        else:
            self._add_calls(out, calls)

    def _add_calls(self, out: list[dict], calls) -> None:
        for name, args, call_id in calls:
            call = {"id": call_id or self.make_id(), "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}}
            out.append({"tool_calls": [{"index": len(self.tool_calls), **call}]})
            self.tool_calls.append(call)

    def _emit(self, out: list[dict], channel: str, text: str) -> None:
        """Send text to a channel, stripping it at both ends across deltas: leading whitespace is
        dropped, trailing whitespace waits until non-space text follows it in the same channel."""
        if not self._started[channel]:
            text = text.lstrip()
        if not text:
            return
        body = text.rstrip()
        if not body:
            self._space[channel] += text
            return
        delta = self._space[channel] + body
        self._space[channel] = text[len(body):]
        self._started[channel] = True
        self.parts[channel].append(delta)
        out.append({channel: delta})


def parse_output(text: str, fmt: ToolFormat | None, *, in_reasoning: bool = False,
                 make_id: Callable[[], str] = new_call_id) -> ParsedMessage:
    """Read a whole generation (include a forced call prefix at its start).

    >>> from sftune.infer.toolformat import BUILTIN_FORMATS
    >>> r = parse_output('<tool_call>{"name": "f", "arguments": {"x": 1}</tool_call>', BUILTIN_FORMATS["hermes"])
    >>> r.content, r.tool_calls, r.problems
    ('<tool_call>{"name": "f", "arguments": {"x": 1}</tool_call>', [], ["hermes tool call kept as text: not valid JSON: Expecting ',' delimiter at character 36"])
    """
    parser = ToolCallParser(fmt, in_reasoning=in_reasoning, make_id=make_id)
    parser.feed(text)
    parser.finish()
    return parser.result()


def prompt_opens_reasoning(prompt: str, fmt: ToolFormat | None) -> bool:
    """Whether the generation prompt ends inside an opened reasoning block (``...assistant\\n<think>\\n``).

    >>> from sftune.infer.toolformat import BUILTIN_FORMATS
    >>> q = BUILTIN_FORMATS["qwen3"]
    >>> prompt_opens_reasoning("<|im_start|>assistant\\n<think>\\n", q), prompt_opens_reasoning("assistant\\n<think>\\n\\n</think>\\n\\n", q)
    (True, False)
    """
    return bool(fmt and fmt.reasoning_start and prompt.rstrip().endswith(fmt.reasoning_start))


def merge_deltas(deltas) -> dict:
    """Accumulate deltas into one message the way OpenAI clients do (for tests and ``sftune chat``).

    >>> merge_deltas([{"content": "a"}, {"content": "b"}, {"tool_calls": [{"index": 0, "id": "c", "type": "function",
    ...               "function": {"name": "f", "arguments": "{}"}}]}])
    {'content': 'ab', 'reasoning_content': None, 'tool_calls': [{'id': 'c', 'type': 'function', 'function': {'name': 'f', 'arguments': '{}'}}]}
    """
    msg = {"content": None, "reasoning_content": None, "tool_calls": []}
    for d in deltas:
        for key in (CONTENT, REASONING):
            if d.get(key) is not None:
                msg[key] = (msg[key] or "") + d[key]
        for tc in d.get("tool_calls") or []:
            while len(msg["tool_calls"]) <= tc["index"]:
                msg["tool_calls"].append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
            slot = msg["tool_calls"][tc["index"]]
            slot["id"] = tc.get("id") or slot["id"]
            fn = tc.get("function") or {}
            slot["function"]["name"] += fn.get("name") or ""
            slot["function"]["arguments"] += fn.get("arguments") or ""
    return msg
