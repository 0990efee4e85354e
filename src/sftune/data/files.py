"""Raw rows out of data files, each with where it came from.

This module knows file types, not layouts: it yields ``(Source, row)`` pairs where ``row`` is a
``dict`` (one record, as stored) or a :class:`DataError` (a row that could not even be decoded:
malformed JSON, bytes that are not UTF-8, an unreadable file). ``sftune.data.readers`` turns the
dicts into conversations and hands the errors to a :class:`DataReport`.

Supported sources, chosen from the path:

- ``.jsonl`` / ``.ndjson``: one JSON object per line. Each line is decoded on its own, so one bad
  line is one bad row, never a lost file. Blank lines are skipped. ``line`` is 1-based.
- ``.json``: a top-level array of objects, or an object holding one list of rows
  (``{"data": [...]}``). Each element's line is found while scanning.
- ``.csv``: a header line, then one row per record (quoted fields may span lines; ``line`` is
  the record's first line).
- ``.parquet``: ``index`` is the 0-based row number.
- a folder written by ``datasets.Dataset.save_to_disk`` (or a ``DatasetDict``: ``split`` picks one).
- anything else that does not look like a local path: a hub dataset name (``datasets.load_dataset``).

>>> import json, tempfile, os
>>> d = tempfile.mkdtemp(); p = os.path.join(d, "a.jsonl")
>>> _ = open(p, "w").write('{"text": "a"}\\n\\n{"text": \\n')
>>> [(s.line, r if isinstance(r, dict) else r.reason) for s, r in iter_rows(p)]
[(1, {'text': 'a'}), (3, 'malformed JSON')]
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from .conversation import Source
from .report import DataError

JSONL_SUFFIXES = (".jsonl", ".ndjson")
JSON_SUFFIXES = (".json",)
CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
#: Suffixes that mark a path as a local file (so a missing one is reported, not sent to the hub).
#: Hub names may contain dots (``teknium/OpenHermes-2.5``), so only known data suffixes count.
LOCAL_SUFFIXES = JSONL_SUFFIXES + JSON_SUFFIXES + CSV_SUFFIXES + PARQUET_SUFFIXES + (
    ".txt", ".tsv", ".arrow", ".gz", ".zst", ".bz2", ".xz", ".zip", ".yaml", ".yml",
)
SUPPORTED = ".json, .jsonl, .parquet, .csv, a folder written by datasets.save_to_disk, or a hub dataset name"

Row = "dict | DataError"
_WS = re.compile(r"[ \t\n\r]*")
_SURROGATE = re.compile("[\udc80-\udcff]")  # what errors="surrogateescape" turns undecodable bytes into


def source_kind(path: str) -> str:
    """Which reader a path needs: ``jsonl``, ``json``, ``csv``, ``parquet``, ``disk`` or ``hub``.

    Raises :class:`DataError` for a local path that does not exist or has an unsupported type.

    >>> source_kind("org/dataset-2.5")
    'hub'
    >>> source_kind("missing.jsonl")
    Traceback (most recent call last):
    ...
    sftune.data.report.DataError: missing.jsonl: data file not found
      fix: check the path (relative paths start from ...
    """
    p = Path(path).expanduser()
    suffix = p.suffix.lower()
    if p.is_dir():
        return "disk"
    if p.is_file():
        for kind, suffixes in (("jsonl", JSONL_SUFFIXES), ("json", JSON_SUFFIXES), ("csv", CSV_SUFFIXES), ("parquet", PARQUET_SUFFIXES)):
            if suffix in suffixes:
                return kind
        raise DataError(
            f"unsupported file type '{suffix or '(none)'}'",
            path,
            fix=f"convert it to one of: {SUPPORTED}",
        )
    if _looks_local(path):
        raise DataError(
            "data file not found",
            path,
            fix=f"check the path (relative paths start from {os.getcwd()}); supported: {SUPPORTED}",
        )
    return "hub"


def _looks_local(path: str) -> bool:
    # A hub name is "name" or "owner/name": no leading "/", ".", "~", at most one "/", no backslash.
    return (
        os.path.isabs(path)
        or path.startswith((".", "~"))
        or "\\" in path
        or path.count("/") > 1
        or Path(path).suffix.lower() in LOCAL_SUFFIXES
    )


def iter_rows(path: str, split: str = "train") -> Iterator[tuple[Source, Row]]:
    """Yield ``(Source, dict | DataError)`` for every row of ``path``, in file order.

    Raises :class:`DataError` (rather than yielding it) when the source as a whole cannot be
    opened because of how it was named: a missing file, an unknown split, a hub name offline.
    """
    kind = source_kind(path)
    readers = {"jsonl": _jsonl_rows, "json": _json_rows, "csv": _csv_rows, "parquet": _parquet_rows}
    if kind in readers:
        try:
            yield from readers[kind](path)
        except OSError as e:  # permissions, a file that vanished, an I/O error mid-read
            yield Source(path), _unreadable(path, e)
    elif kind == "disk":
        yield from _dataset_rows(_load_from_disk(path, split), path)
    else:
        yield from _dataset_rows(_load_hub(path, split), path)


def _unreadable(path: str, e: Exception) -> DataError:
    return DataError("unreadable file", path, fix=f"check the file can be opened and is complete ({type(e).__name__}: {e})")


def _not_utf8(raw: bytes, src: Source) -> DataError:
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
def _jsonl_rows(path: str) -> Iterator[tuple[Source, Row]]:
    index = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
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
                yield src, _not_utf8(raw, src)
                continue
            try:
                yield src, _object(json.loads(text), src)
            except json.JSONDecodeError as e:
                yield src, _malformed(src, e, f"line {lineno} one")


def _object(value, src: Source) -> Row:
    if isinstance(value, dict):
        return value
    return DataError(
        "row is not an object",
        src,
        fix=f"each row must be a JSON object like {{\"messages\": [...]}}, got {type(value).__name__}",
    )


# ---- .json ------------------------------------------------------------------------------------
def _json_rows(path: str) -> Iterator[tuple[Source, Row]]:
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
            yield src, _not_utf8(text[start:end].encode("utf-8", errors="surrogateescape"), src)
        else:
            yield src, row


def _has_surrogate(value) -> bool:
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
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


# ---- .csv -------------------------------------------------------------------------------------
def _csv_rows(path: str) -> Iterator[tuple[Source, Row]]:
    # The csv module tracks physical lines (line_num), so a quoted field spanning lines still
    # gives the record's true first line. surrogateescape keeps reading past non-UTF-8 bytes.
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            return
        index = 0
        start = reader.line_num + 1
        for values in reader:
            src = Source(path, start, index)
            start = reader.line_num + 1
            if not any(v.strip() for v in values):
                continue  # a blank line
            index += 1
            if any(_SURROGATE.search(v) for v in values):
                raw = ",".join(values).encode("utf-8", errors="surrogateescape")
                yield src, _not_utf8(raw, src)
                continue
            if len(values) > len(header):
                yield src, DataError(
                    "wrong number of CSV fields", src, fix=f"the header has {len(header)} columns, this row {len(values)}; quote fields that contain commas"
                )
                continue
            # Short rows: the missing trailing fields are absent (None), as with a missing key.
            yield src, {h: (values[i] if i < len(values) else None) for i, h in enumerate(header)}


# ---- .parquet, save_to_disk folders, hub ------------------------------------------------------
def _parquet_rows(path: str) -> Iterator[tuple[Source, Row]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid for a corrupt or non-parquet file
        yield Source(path), _unreadable(path, e)
        return
    index = 0
    for batch in pf.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            yield Source(path, None, index), row
            index += 1


def _load_from_disk(path: str, split: str):
    import datasets

    try:
        ds = datasets.load_from_disk(path)
    except FileNotFoundError as e:
        raise DataError(
            "folder is not a dataset written by datasets.save_to_disk",
            path,
            fix=f"pass a data file ({SUPPORTED}) or a folder written by Dataset.save_to_disk ({e})",
        ) from None
    return _pick_split(ds, split, path)


def _pick_split(ds, split: str, where: str):
    import datasets

    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(
                f"no split '{split}' (splits: {', '.join(ds)})",
                where,
                fix=f"pick one with --data {where},split={next(iter(ds), 'train')} or `split:` in the config",
            )
        return ds[split]
    return ds


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _no_network() -> str | None:
    """Why the hub cannot be reached, found in milliseconds (instead of ~25 s of retries), or None."""
    import socket
    from urllib.parse import urlparse

    try:
        from huggingface_hub import constants

        host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    except Exception:
        host = "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError as e:
        return f"no network: {host} cannot be resolved ({e}); with HF_HUB_OFFLINE=1 a copy in the Hugging Face cache is used"
    return None


def _load_hub(name: str, split: str):
    import datasets

    # Offline mode still reads a copy from the local Hugging Face cache, so it is tried first.
    cause = None if _offline() else _no_network()
    try:
        if cause is not None:
            raise ConnectionError(cause)
        ds = datasets.load_dataset(name, split=split)
    except Exception as e:  # offline, no network, unknown name, gated: all end the same way for the user
        if cause is None:
            cause = (
                "HF_HUB_OFFLINE is set and it is not in the local cache"
                if _offline()
                else f"the name is wrong, the dataset is gated, or the network failed: {type(e).__name__}: {e}"
            )
        raise DataError(
            f"could not download hub dataset '{name}' ({cause})",
            name,
            fix="pass a local file instead (.json, .jsonl, .parquet, .csv, or a datasets.save_to_disk folder); "
            "if it is meant to be a local file, check the path",
        ) from None
    return _pick_split(ds, split, name)


def _dataset_rows(ds, path: str) -> Iterator[tuple[Source, Row]]:
    index = 0
    for batch in ds.iter(batch_size=1024):
        names = list(batch)
        for values in zip(*(batch[c] for c in names)):
            yield Source(path, None, index), dict(zip(names, values))
            index += 1
