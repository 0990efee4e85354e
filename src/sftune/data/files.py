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

This module picks the reader from the path and holds the CSV and Parquet ones; the JSON readers
are in :mod:`sftune.data.json_rows`, ``save_to_disk`` folders and hub datasets in :mod:`sftune.data.hub`.

>>> import json, tempfile, os
>>> d = tempfile.mkdtemp(); p = os.path.join(d, "a.jsonl")
>>> _ = open(p, "w").write('{"text": "a"}\\n\\n{"text": \\n')
>>> [(s.line, r if isinstance(r, dict) else r.reason) for s, r in iter_rows(p)]
[(1, {'text': 'a'}), (3, 'malformed JSON')]
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

from .conversation import Source
from .hub import SUPPORTED, dataset_rows, load_from_disk, load_hub
from .json_rows import SURROGATE, Row, Span, json_rows, jsonl_rows, not_utf8
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


def iter_rows(path: str, split: str = "train", span: Span | None = None) -> Iterator[tuple[Source, Row]]:
    """Yield ``(Source, dict | DataError)`` for every row of ``path``, in file order.

    Rows are read lazily (a line, a CSV record, a Parquet batch at a time), except that a
    ``.json`` array is parsed whole. ``span`` reads one slice of a ``.jsonl`` file
    (:func:`~sftune.data.json_rows.jsonl_spans`). Raises :class:`DataError` (rather than yielding it) when the source as a whole cannot be
    opened because of how it was named: a missing file, an unknown split, a hub name offline.
    """
    kind = source_kind(path)
    readers = {"jsonl": jsonl_rows, "json": json_rows, "csv": _csv_rows, "parquet": _parquet_rows}
    if span is not None and kind != "jsonl":
        raise ValueError(f"{path}: only .jsonl files are read in spans, this is a {kind} source")
    if kind in readers:
        try:
            yield from (readers[kind](path, span) if span is not None else readers[kind](path))
        except OSError as e:  # permissions, a file that vanished, an I/O error mid-read
            yield Source(path), _unreadable(path, e)
    elif kind == "disk":
        yield from dataset_rows(load_from_disk(path, split), path)
    else:
        yield from dataset_rows(load_hub(path, split), path)


def _unreadable(path: str, e: Exception) -> DataError:
    return DataError("unreadable file", path, fix=f"check the file can be opened and is complete ({type(e).__name__}: {e})")


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
            if any(SURROGATE.search(v) for v in values):
                raw = ",".join(values).encode("utf-8", errors="surrogateescape")
                yield src, not_utf8(raw, src)
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
