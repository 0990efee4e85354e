"""Encoding data in pieces with bounded memory, in one process or several (``--num-proc``).

:func:`sftune.data.prepare.prepare` hands its sources to :func:`encode_sources`, which

1. plans the work as :class:`Piece` s: one per source, and a large ``.jsonl`` file cut into byte
   spans at line ends (:func:`~sftune.data.json_rows.jsonl_spans`), so several processes can
   share one big file and still name every row's true ``file:line``;
2. reads each piece lazily, encodes :data:`CHUNK` conversations at a time and turns every chunk
   into an Arrow record batch at once (4 bytes a token instead of Python's ~36), so memory holds
   one chunk plus a small write buffer, never the dataset;
3. keeps the batches in memory while they are small (the common case: no files, as fast as
   before) and streams them to an Arrow file once they pass :data:`SPILL_BYTES`; with several
   processes, each piece goes to its own file, and the files are read back in input order.

Rows and reports are the same whatever the number of processes: every piece of a split file is
parsed in the format detected from the file's first row, bad rows keep their ``file:line``, and
the pieces' reports are added up in input order (so the first example locations per reason are
the same ones a single process keeps). In strict mode the first bad row in input order raises.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..config import DataSource
from .json_rows import Span, jsonl_spans
from .report import DataError, DataReport
from .tokenize import Encoder, EncodeStats

CHUNK = 512  # conversations per tokenizer call: big enough for the Rust batch path, small for memory
SPILL_BYTES = 64 << 20  # in-memory Arrow data past which one process streams its rows to a file
WRITE_BYTES = 16 << 20  # Arrow data buffered per write: few, large record batches in the file
#: A ``.jsonl`` file is cut into pieces of at least this many bytes; smaller data is not worth a
#: process start (a few seconds: Python, transformers, the tokenizer), so it stays in one process.
MIN_PIECE_BYTES = 8 << 20
PIECES_PER_PROC = 4  # more pieces than processes, so a slow piece does not leave the others idle


@dataclass(frozen=True)
class Piece:
    """One unit of work: a data source, or one span of a ``.jsonl`` source."""

    source: DataSource
    span: Span | None = None


@dataclass
class EncodeJob:
    """Everything a process needs to encode pieces the way :func:`~sftune.data.prepare.prepare` does."""

    tokenizer: object
    template: str
    mask: str
    max_length: int
    template_kwargs: dict
    reasoning: str
    strict: bool = False
    default_format: str = "auto"
    system_prompt: str | None = None

    def encoder(self) -> Encoder:
        return Encoder(self.tokenizer, self.template, self.mask, self.max_length, template_kwargs=self.template_kwargs, reasoning=self.reasoning)


@dataclass
class Encoded:
    """The rows of every piece, in input order: in memory (``batches``) or in Arrow ``files``."""

    batches: list = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    rows: int = 0

    def dataset(self):
        """A ``datasets.Dataset``: in memory, or memory-mapped from ``files``."""
        import datasets
        import pyarrow as pa

        if self.files:
            return datasets.concatenate_datasets([datasets.Dataset.from_file(str(p)) for p in self.files])
        return datasets.Dataset(pa.Table.from_batches(self.batches, schema=schema()).combine_chunks())


def schema():
    import pyarrow as pa

    return pa.schema([("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32())), ("source", pa.string())])


def rows_to_batch(rows: list[dict]):
    """Encoded rows -> one Arrow record batch (``input_ids``/``labels``: lists of int32).

    Built from one flat buffer per column: a third of the time of ``Dataset.from_dict``, which
    checks every row against the features one by one.

    >>> b = rows_to_batch([{"input_ids": [5, 6], "labels": [-100, 6], "source": "a.jsonl:1"}])
    >>> b.to_pylist()
    [{'input_ids': [5, 6], 'labels': [-100, 6], 'source': 'a.jsonl:1'}]
    """
    import numpy as np
    import pyarrow as pa

    def lists(col: list[list[int]]) -> pa.ListArray:
        offsets = np.zeros(len(col) + 1, dtype=np.int32)
        np.cumsum(np.fromiter(map(len, col), np.int64, len(col)), out=offsets[1:])
        flat = np.fromiter(itertools.chain.from_iterable(col), np.int32, int(offsets[-1]))
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))

    return pa.RecordBatch.from_arrays(
        [lists([r["input_ids"] for r in rows]), lists([r["labels"] for r in rows]), pa.array([r["source"] for r in rows], pa.string())],
        schema=schema(),
    )


class ArrowSink:
    """Record batches, held in memory up to ``spill_bytes`` and then streamed to ``path``.

    ``spill_bytes=0`` writes everything to ``path`` (what a worker process does). Writes are
    buffered to :data:`WRITE_BYTES` so the file holds a few large batches, not one per chunk.
    """

    def __init__(self, path: Path, spill_bytes: int | None = None):
        self.path = Path(path)
        self.spill_bytes = SPILL_BYTES if spill_bytes is None else spill_bytes
        self.held: list = []
        self.held_bytes = 0
        self.rows = 0
        self.writer = None

    def add(self, rows: list[dict]) -> None:
        if not rows:
            return
        batch = rows_to_batch(rows)
        self.rows += batch.num_rows
        self.held.append(batch)
        self.held_bytes += batch.nbytes
        limit = WRITE_BYTES if self.writer is not None else self.spill_bytes
        if self.held_bytes > limit:
            self._write()

    def _write(self) -> None:
        import pyarrow as pa

        if self.writer is None:
            # The IPC stream format is what datasets.Dataset.from_file memory-maps.
            self.writer = pa.ipc.new_stream(str(self.path), schema())
        for batch in pa.Table.from_batches(self.held, schema=schema()).combine_chunks().to_batches():
            self.writer.write_batch(batch)
        self.held, self.held_bytes = [], 0

    def close(self) -> Encoded:
        if self.writer is None:
            return Encoded(batches=self.held, rows=self.rows)
        if self.held:
            self._write()
        self.writer.close()
        return Encoded(files=[self.path], rows=self.rows)


# ---- planning -----------------------------------------------------------------------------------
def plan(sources: list[DataSource], num_proc: int, default_format: str = "auto") -> list[Piece]:
    """Pieces of work, in input order: a source each; with ``num_proc > 1``, a ``.jsonl`` source of
    more than :data:`MIN_PIECE_BYTES` is cut into spans (about :data:`PIECES_PER_PROC` per process)."""
    from .files import source_kind

    # A missing file or an unsupported type fails now, not after the sources before it are encoded.
    kinds = [source_kind(s.path) for s in sources]
    if num_proc <= 1:
        return [Piece(s) for s in sources]
    total = sum(os.path.getsize(s.path) for s, k in zip(sources, kinds) if k == "jsonl")
    piece_bytes = max(MIN_PIECE_BYTES, -(-total // (num_proc * PIECES_PER_PROC)))
    pieces = []
    for src, kind in zip(sources, kinds):
        size = os.path.getsize(src.path) if kind == "jsonl" else 0
        if size <= piece_bytes:
            pieces.append(Piece(src))
            continue
        src = _with_format(src, default_format)
        pieces.extend(Piece(src, span) for span in jsonl_spans(src.path, -(-size // piece_bytes)))
    return pieces


def _with_format(src: DataSource, default_format: str) -> DataSource:
    """``src`` with its format fixed by the file's first object row, so every span of the file is
    parsed as the whole file would be (one process detects the format once, from that row)."""
    from .files import iter_rows
    from .readers import detect_format

    fmt = src.format if src.format != "auto" else default_format
    if fmt == "auto":
        first = next((row for _, row in iter_rows(src.path) if isinstance(row, dict)), None)
        if first is None:
            return src  # no readable row: every span finds that out itself
        try:
            fmt = detect_format(list(first), src.path, src.columns)
        except DataError:
            return src  # ambiguous: the first span raises it where one process would
    return src.model_copy(update={"format": fmt})


# ---- encoding -----------------------------------------------------------------------------------
def encode_piece(piece: Piece, job: EncodeJob, encoder: Encoder, report: DataReport, sink: ArrowSink, bar=None) -> None:
    """Read one piece lazily and encode it :data:`CHUNK` conversations at a time into ``sink``."""
    from .readers import iter_conversations

    convs = iter_conversations(piece.source, report, default_format=job.default_format, system_prompt=job.system_prompt, span=piece.span)
    while chunk := list(itertools.islice(convs, CHUNK)):
        sink.add(encoder.encode_many(chunk, report))
        if bar is not None:
            bar.update(len(chunk))


def encode_sources(job: EncodeJob, sources: list[DataSource], num_proc: int, work_dir: Path, report: DataReport,
                   progress: bool = True) -> tuple[Encoded, Encoder]:
    """Encode every source into ``report`` and Arrow data; returns the rows and an :class:`Encoder`
    whose statistics cover all of them (for :meth:`Encoder.warnings`)."""
    from tqdm.auto import tqdm

    pieces = plan(sources, num_proc, job.default_format)
    encoder = job.encoder()
    # delay: no bar at all for the usual small run, one that counts for a long one.
    with tqdm(desc="tokenizing", unit="conv", disable=not progress, delay=2) as bar:
        if num_proc <= 1 or len(pieces) <= 1:
            sink = ArrowSink(Path(work_dir) / "rows.arrow")
            for piece in pieces:
                encode_piece(piece, job, encoder, report, sink, bar)
            return sink.close(), encoder
        encoded = Encoded()
        paths = [Path(work_dir) / f"piece-{i:05d}.arrow" for i in range(len(pieces))]
        for path, (rows, part, stats) in zip(paths, _run_pool(job, pieces, paths, min(num_proc, len(pieces)))):
            report.add(part)
            add_stats(encoder.stats, stats)
            bar.update(part.rows_in)
            if rows:
                encoded.files.append(path)
                encoded.rows += rows
        return encoded, encoder


def _run_pool(job: EncodeJob, pieces: list[Piece], paths: list[Path], n: int):
    import multiprocessing

    # spawn, not fork: the parent may hold torch's and the tokenizer's threads, which fork copies
    # in an unknown state (and macOS and Windows only have spawn).
    pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker, initargs=(job,))
    try:
        # map yields in input order; a worker's DataError (strict mode) is raised at its piece,
        # after every earlier piece finished cleanly: the first bad row in input order.
        yield from pool.map(_encode_in_worker, pieces, paths)
    finally:
        pool.shutdown(cancel_futures=True)


_WORKER: dict = {}


def _start_worker(job: EncodeJob) -> None:
    # One process per core already: the Rust tokenizer's own thread pool would oversubscribe them.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _WORKER["job"], _WORKER["encoder"] = job, job.encoder()


def _encode_in_worker(piece: Piece, path: Path) -> tuple[int, DataReport, EncodeStats]:
    job, encoder = _WORKER["job"], _WORKER["encoder"]
    encoder.stats = EncodeStats()  # this piece's statistics alone
    report = DataReport(strict=job.strict)
    sink = ArrowSink(path, spill_bytes=0)
    encode_piece(piece, job, encoder, report, sink)
    return sink.close().rows, report, encoder.stats


# ---- adding up pieces ---------------------------------------------------------------------------
def add_stats(total: EncodeStats, part: EncodeStats) -> EncodeStats:
    """Add a piece's encoding statistics to ``total``."""
    for f in fields(EncodeStats):
        if f.name == "end_token_examples":
            total.end_token_examples |= set(itertools.islice(part.end_token_examples - total.end_token_examples, max(0, 3 - len(total.end_token_examples))))
        else:
            setattr(total, f.name, getattr(total, f.name) + getattr(part, f.name))
    return total
