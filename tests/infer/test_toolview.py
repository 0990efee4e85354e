"""Terminal display of reasoning and tool calls (what ``sftune chat`` shows)."""

from __future__ import annotations

import doctest
import io

from sftune.infer import toolview
from sftune.infer.toolcalls import ToolCallParser
from sftune.infer.toolformat import BUILTIN_FORMATS
from sftune.infer.toolview import ReplyPrinter


def test_doctests():
    res = doctest.testmod(toolview)
    assert res.attempted > 0 and res.failed == 0


def show(text: str, chunk: int, color: bool) -> str:
    out = io.StringIO()
    printer = ReplyPrinter(out, color=color)
    parser = ToolCallParser(BUILTIN_FORMATS["qwen3"], make_id=lambda: "call_x")
    for i in range(0, len(text), chunk):
        for d in parser.feed(text[i:i + chunk]):
            printer(d)
    for d in parser.finish():
        printer(d)
    printer.close()
    return out.getvalue()


REPLY = ("<think>\nTwo cities, two calls.\n</think>\n\nChecking both.\n"
         '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n'
         '<tool_call>\n{"name": "get_weather", "arguments": {"city": "上海", "unit": "celsius"}}\n</tool_call>')


def test_reasoning_apart_answer_plain_calls_as_calls():
    expected = ('thinking: Two cities, two calls.\nChecking both.\n-> call get_weather(city="Oslo")\n'
                '-> call get_weather(city="上海", unit="celsius")\n')
    for chunk in (1, 3, 7, len(REPLY)):  # the same screen however the text arrives
        assert show(REPLY, chunk, color=False) == expected
    colored = show(REPLY, 5, color=True)
    assert "\x1b[2mthinking: " in colored and '\x1b[36m-> call get_weather(city="Oslo")\x1b[0m' in colored
    assert "<tool_call>" not in colored and "<think>" not in colored


def test_plain_answer_is_unchanged():
    assert show("Hello there!", 4, color=False) == "Hello there!\n"
