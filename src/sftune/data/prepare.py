"""The data step end to end: files -> conversations -> tokens and masks -> a dataset on disk.

``prepare()`` is what ``sftune prepare`` and ``sftune train`` call. Its result is cached on
disk, keyed by the data's content, the tokenizer, the template and every data option, so a
second run with the same inputs skips it.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..config import DataSource, SFTConfig
from .report import DataReport
from .shards import CHUNK, EncodeJob, encode_sources, rows_to_batch
from .templates import resolve_template
from .tokenize import Encoder

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A prepared dataset (``input_ids``, ``labels``, ``source``) and how it was made."""

    dataset: "object"  # datasets.Dataset
    report: DataReport
    template: str
    """The chat template (Jinja source) every row was rendered with. Part of the cache key, written
    by :func:`save_prepared`, and what training installs in the tokenizer it saves."""
    seconds: float
    cached: bool = False
    path: Path | None = None

    @property
    def rows_per_second(self) -> float:
        return self.report.rows_in / self.seconds if self.seconds > 0 else float("inf")


def _fingerprint_path(path: str) -> dict:
    p = Path(path)
    if p.is_file():
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return {"file": h.hexdigest()}
    if p.is_dir():
        return {"dir": sorted((str(q.relative_to(p)), q.stat().st_size, q.stat().st_mtime_ns) for q in p.rglob("*") if q.is_file())}
    return {"name": path}  # hub dataset: the name is the best key there is


def _tokenizer_fingerprint(tokenizer) -> str:
    # The full serialized tokenizer (vocab, merges, normalizer, added tokens) identifies it exactly.
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_key(cfg: SFTConfig, sources: list[DataSource], tokenizer, template: str) -> str:
    parts = {
        "sftune": __version__,
        "sources": [{**s.model_dump(exclude={"weight", "share"}), **_fingerprint_path(s.path)} for s in sources],
        "tokenizer": _tokenizer_fingerprint(tokenizer),
        "template": template,
        "options": {k: getattr(cfg, k) for k in ("format", "mask", "max_length", "system_prompt", "template_kwargs", "reasoning")},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def encode_conversations(convs, encoder: Encoder, report: DataReport, progress: bool = True) -> dict[str, list]:
    """Encode a list of conversations in chunks; returns columns for :func:`to_dataset`.

    Holds every row in memory: :func:`prepare` streams its sources instead (:mod:`sftune.data.shards`).
    """
    from tqdm.auto import tqdm

    cols: dict[str, list] = {"input_ids": [], "labels": [], "source": []}
    with tqdm(total=len(convs), desc="tokenizing", unit="conv", disable=not progress or len(convs) < 2000) as bar:
        for i in range(0, len(convs), CHUNK):
            for row in encoder.encode_many(convs[i : i + CHUNK], report):
                for k in cols:
                    cols[k].append(row[k])
            bar.update(min(CHUNK, len(convs) - i))
    return cols


def prepare(
    cfg: SFTConfig,
    tokenizer,
    sources: list[DataSource] | None = None,
    *,
    template: str | None = None,
    use_cache: bool = True,
    progress: bool = True,
    num_proc: int | None = None,
) -> Prepared:
    """Read every source, encode it, and return the dataset (rows in input order).

    ``template`` is a chat template already resolved (Jinja source), for a caller preparing
    several sources with one template; by default ``cfg.template`` is resolved here.

    Memory stays bounded by a chunk of rows, whatever the size of the data: sources are read
    lazily and encoded in chunks, and once the encoded rows pass 64 MiB they are streamed to an
    Arrow file; the dataset returned is then memory-mapped (from the cache, or with
    ``use_cache=False`` from a work folder removed when Python exits). ``num_proc`` (default
    ``cfg.num_proc``) encodes in that many processes: per source, and large ``.jsonl`` files in
    spans; the rows and the report are the same as with one process. See :mod:`sftune.data.shards`.
    """
    import datasets

    sources = list(cfg.data if sources is None else sources)
    if not sources:
        raise ValueError("no training data given: pass --data FILE (or `data:` in the config)")
    num_proc = cfg.num_proc if num_proc is None else num_proc
    template = resolve_template(cfg.template, tokenizer) if template is None else template
    t0 = time.perf_counter()
    key = cache_key(cfg, sources, tokenizer, template)
    from ..model.loading import cache_root

    cache_dir = cache_root(cfg.cache_dir) / "prepared" / key
    if use_cache and (cache_dir / "report.json").is_file() and not cfg.strict:
        ds = datasets.load_from_disk(str(cache_dir / "dataset"))
        report = DataReport.from_dict(json.loads((cache_dir / "report.json").read_text()))
        return Prepared(ds, report, template, time.perf_counter() - t0, cached=True, path=cache_dir)

    report = DataReport(strict=cfg.strict)
    job = EncodeJob(tokenizer, template, cfg.mask, cfg.max_length, cfg.template_kwargs, cfg.reasoning,
                    strict=cfg.strict, default_format=cfg.format, system_prompt=cfg.system_prompt)
    work = _work_dir(cache_dir.parent)
    keep_work = False
    try:
        encoded, encoder = encode_sources(job, sources, num_proc, work, report, progress)
        report.kept = encoded.rows
        report.notes.extend(encoder.warnings(report))
        ds = encoded.dataset()
        seconds = time.perf_counter() - t0
        if use_cache and _write_cache(ds, report, cache_dir) and encoded.files:
            ds = datasets.load_from_disk(str(cache_dir / "dataset"))  # the cache's copy, memory-mapped
        else:
            keep_work = bool(encoded.files)
    finally:
        if keep_work:  # the dataset returned maps these files
            atexit.register(shutil.rmtree, work, ignore_errors=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return Prepared(ds, report, template, seconds, path=cache_dir if use_cache else None)


def _work_dir(prepared_root: Path) -> Path:
    """A fresh folder for rows streamed to disk: beside the cache (same disk, usually roomy), else
    the system's temporary folder (a read-only cache must not fail the run)."""
    try:
        prepared_root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".work-", dir=prepared_root))
    except OSError:
        return Path(tempfile.mkdtemp(prefix="sftune-prepare-"))


def to_dataset(cols: dict[str, list]):
    """Columns of rows -> ``datasets.Dataset`` (``input_ids``/``labels``: lists of int32).

    >>> to_dataset({"input_ids": [[1, 2]], "labels": [[-100, 2]], "source": ["a.jsonl:1"]})[0]
    {'input_ids': [1, 2], 'labels': [-100, 2], 'source': 'a.jsonl:1'}
    """
    import datasets
    import pyarrow as pa

    names = ("input_ids", "labels", "source")
    rows = [dict(zip(names, r)) for r in zip(*(cols[k] for k in names))]
    return datasets.Dataset(pa.Table.from_batches([rows_to_batch(rows)]))


def _write_cache(ds, report: DataReport, cache_dir: Path) -> bool:
    """Whether the dataset and its report were written to ``cache_dir``."""
    from ..atomic import atomic_dir

    # Written whole or not at all: an interrupted write is never mistaken for a cache hit.
    try:
        with atomic_dir(cache_dir) as tmp:
            ds.save_to_disk(str(tmp / "dataset"))
            report.save(tmp / "report.json")
        return True
    except OSError as e:  # a full disk or a read-only cache must not fail the run
        log.warning("could not cache the prepared dataset in %s: %s", cache_dir, e)
        return False


def save_prepared(prep: Prepared, output_dir: str | Path) -> Path:
    """Write the dataset (``datasets.load_from_disk(DIR)``), the report and the template to ``output_dir``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    prep.dataset.save_to_disk(str(out))  # refuses nothing: DIR holds the dataset files at its root
    prep.report.save(out / "data_report.json")
    (out / "chat_template.jinja").write_text(prep.template, encoding="utf-8")
    return out
