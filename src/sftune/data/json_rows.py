"""JSON and JSON Lines files -> raw rows, each with its line; a broken row is one bad row, never a lost file.

Row errors are :class:`DataError` values yielded in place of the row (see ``sftune.data.files``):
malformed JSON at its line and column, bytes that are not UTF-8, a row that is not an object.

>>> import tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "a.json")
>>> _ = open(p, "w").write('[\\n  {"text": "a"},\\n  {"text": },\\n  {"text": "c"}\\n]')
>>> [(s.line, r if isinstance(r, dict) else r.reason) for s, r in json_rows(p)]
[(2, {'text': 'a'}), (3, 'malformed JSON'), (4, {'text': 'c'})]
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from .conversation import Source
from .report import DataError

Row = "dict | DataError"
_WS = re.compile(r"[ \t\n\r]*")
SURROGATE = re.compile("[\udc80-\udcff]")  # what errors="surrogateescape" turns undecodable bytes into


def not_utf8(raw: bytes, src: Source) -> DataError:
    try:
        raw.decode("utf-8")
        col, byte = None, None
    except UnicodeDecodeError as e:
        col, byte = e.start + 1, raw[e.start]
    at = f" (byte 0x{byte:02x} at column {col})" if col is not None else ""
    return DataError(
        "not valid UTF-8",
        src,
        fix=f"the row has bytes that are not UTF-8{at}; re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
    )


def _malformed(src: Source, e: json.JSONDecodeError, what: str) -> DataError:
    at = f"column {e.colno}" if e.lineno == 1 or src.line == e.lineno else f"line {e.lineno} column {e.colno}"
    return DataError("malformed JSON", src, fix=f"make {what} valid JSON (parser: {e.msg} at {at})")


# ---- .jsonl -----------------------------------------------------------------------------------
class Span(NamedTuple):
    """A slice of a ``.jsonl`` file that starts and ends at line starts: bytes ``[start, end)``
    (``end=None``: to the end of the file), with the line number and row index of its first line,
    so rows read from the slice name the same ``file:line`` as rows read from the whole file."""

    start: int = 0
    end: int | None = None
    line: int = 1
    index: int = 0


def jsonl_rows(path: str, span: Span | None = None) -> Iterator[tuple[Source, Row]]:
    """Rows of a ``.jsonl`` file (or of one :class:`Span` of it), read one line at a time."""
    span = span or Span()
    index = span.index
    with open(path, "rb") as f:
        f.seek(span.start)
        lines = f if span.end is None else _lines_until(f, span.end - span.start)
        for lineno, raw in enumerate(lines, start=span.line):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a BOM some editors write
                raw = raw[3:]
            if not raw.strip():
                continue
            src = Source(path, lineno, index)
            index += 1
            raw = raw.rstrip(b"\r\n")  # so the parser's columns refer to this line alone
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield src, not_utf8(raw, src)
                continue
            try:
                yield src, _object(json.loads(text), src)
            except json.JSONDecodeError as e:
                yield src, _malformed(src, e, f"line {lineno} one")


def _lines_until(f, n_bytes: int) -> Iterator[bytes]:
    for raw in f:
        yield raw
        n_bytes -= len(raw)
        if n_bytes <= 0:
            return


def jsonl_spans(path: str, n: int) -> list[Span]:
    """Cut a ``.jsonl`` file into about ``n`` spans of similar size, each ending at a line end.

    One pass over the file counts the lines and rows (non-blank lines) before each cut, so that
    each span can be read on its own (in another process) and still report true line numbers.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.jsonl")
    >>> _ = open(p, "w").write('{"text": "a"}\\n\\n{"text": "b"}\\n{"text": "c"}\\n')
    >>> [(s.line, s.index) for s in jsonl_spans(p, 2)]
    [(1, 0), (4, 2)]
    >>> [[src.line for src, _ in jsonl_rows(p, s)] for s in jsonl_spans(p, 2)]
    [[1, 3], [4]]
    """
    size = os.path.getsize(path)
    step = max(1, -(-size // max(1, n)))
    spans: list[Span] = []
    first = Span(0, None, 1, 0)
    pos, line, index = 0, 1, 0
    with open(path, "rb") as f:
        for raw in f:
            pos += len(raw)
            if (raw[3:] if line == 1 and raw.startswith(b"\xef\xbb\xbf") else raw).strip():
                index += 1
            line += 1
            if pos - first.start >= step and pos < size:
                spans.append(first._replace(end=pos))
                first = Span(pos, None, line, index)
    spans.append(first._replace(end=size))
    return spans


def _object(value, src: Source) -> Row:
    if isinstance(value, dict):
        return value
    return DataError(
        "row is not an object",
        src,
        fix=f"each row must be a JSON object like {{\"messages\": [...]}}, got {type(value).__name__}",
    )


# ---- .json ------------------------------------------------------------------------------------
def json_rows(path: str) -> Iterator[tuple[Source, Row]]:
    data = Path(path).read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text, lossy = data.decode("utf-8"), False
    except UnicodeDecodeError:
        # Keep going: undecodable bytes become lone surrogates, and only the rows holding one are bad.
        text, lossy = data.decode("utf-8", errors="surrogateescape"), True
    scanner = _JsonScanner(text, path)
    for src, row in scanner.rows():
        if lossy and isinstance(row, dict) and _has_surrogate(row):
            start, end = scanner.span_of(src)
            yield src, not_utf8(text[start:end].encode("utf-8", errors="surrogateescape"), src)
        else:
            yield src, row


def _has_surrogate(value) -> bool:
    if isinstance(value, str):
        return SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


class _JsonScanner:
    """Walks a JSON array element by element with ``raw_decode``, tracking line numbers.

    A malformed element is reported at its line, and scanning resumes at the next element that
    starts a line with the same indentation as the first one (how JSON arrays are written by
    ``json.dump(..., indent=...)`` and by hand), so one broken row does not lose the rest.
    """

    def __init__(self, text: str, path: str):
        self.text, self.path = text, path
        self.decoder = json.JSONDecoder()
        self.spans: dict[int, tuple[int, int]] = {}

    def line_of(self, pos: int) -> int:
        return self.text.count("\n", 0, pos) + 1

    def span_of(self, src: Source) -> tuple[int, int]:
        return self.spans[src.index]

    def _ws(self, pos: int) -> int:
        return _WS.match(self.text, pos).end()

    def _fail(self, pos: int, msg: str) -> DataError:
        line = self.line_of(pos)
        col = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        return DataError(
            "unreadable file",
            Source(self.path, line),
            fix=f"{msg} (line {line}, column {col}); a .json file must hold an array of objects, "
            'or an object with one list of rows like {"data": [...]}; use .jsonl for one object per line',
        )

    def rows(self) -> Iterator[tuple[Source, Row]]:
        text = self.text
        pos = self._ws(0)
        if pos == len(text):
            return  # an empty file: no rows
        if text[pos] == "{":
            pos = yield from self._find_list_in_object(pos)
            if pos is None:
                return
        elif text[pos] != "[":
            yield Source(self.path, self.line_of(pos)), self._fail(pos, "expected '[' at the start")
            return
        yield from self._elements(pos + 1)

    def _find_list_in_object(self, pos: int):
        """Return the position of the '[' of the one list value in a top-level object."""
        try:
            whole, end = self.decoder.raw_decode(self.text, pos)
        except json.JSONDecodeError as e:
            yield Source(self.path, e.lineno), self._fail(e.pos, f"not valid JSON: {e.msg}")
            return None
        lists = [k for k, v in whole.items() if isinstance(v, list)]
        if len(lists) != 1:
            found = ", ".join(f"'{k}'" for k in whole) or "none"
            yield Source(self.path, 1), self._fail(
                pos, f"the top-level object has {len(lists)} list values (keys: {found}) where exactly one list of rows was expected"
            )
            return None
        # Walk the keys to find where that list starts (raw_decode on each key and value).
        p = self._ws(pos + 1)
        while True:
            key, p = self.decoder.raw_decode(self.text, p)
            p = self._ws(self._ws(p) + 1)  # skip ':'
            if key == lists[0]:
                return p
            _, p = self.decoder.raw_decode(self.text, p)
            p = self._ws(self._ws(p) + 1)  # skip ','

    def _elements(self, pos: int) -> Iterator[tuple[Source, Row]]:
        text, n = self.text, len(self.text)
        index = 0
        indent = None  # indentation of the first element, for resynchronising after a bad one
        pos = self._ws(pos)
        if pos < n and text[pos] == "]":
            return
        line, counted = 1, 0  # line number at position `counted`, advanced incrementally
        while pos < n:
            if text[pos] == "]":
                return  # after a trailing comma, which hand-written files often have
            line += text.count("\n", counted, pos)
            counted = pos
            src = Source(self.path, line, index)
            if indent is None:
                indent = pos - (text.rfind("\n", 0, pos) + 1)
            try:
                value, end = self.decoder.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                index += 1
                yield src, _malformed(src, e, f"the element at line {line}")
                nxt = self._resync(pos + 1, indent)
                if nxt is None:
                    return
                pos = nxt
                continue
            self.spans[index] = (pos, end)
            index += 1
            yield src, _object(value, src)
            pos = self._ws(end)
            if pos < n and text[pos] == ",":
                pos = self._ws(pos + 1)
            elif pos < n and text[pos] == "]":
                return
            elif pos < n:
                # A missing comma: reported at the line where it was expected (one extra bad
                # entry), then the next element is read as if the comma were there.
                line += text.count("\n", counted, pos)
                counted = pos
                bad = Source(self.path, line, None)
                yield bad, DataError("malformed JSON", bad, fix=f"expected ',' or ']' before line {line}, column {pos - text.rfind(chr(10), 0, pos)}")
            # pos == n: the closing ']' is missing (a truncated file); every element was read.

    def _resync(self, pos: int, indent: int) -> int | None:
        m = re.compile(r"\n" + " " * indent + r"[{\[]").search(self.text, pos)
        return m.end() - 1 if m else None
