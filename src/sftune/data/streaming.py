"""Training data larger than memory (``--streaming``): rows are read, checked, encoded and packed while training consumes them.

The in-memory data stage (:func:`sftune.data.prepare.prepare`, then mixing and packing) holds
every sample before the first step. Streaming builds the same steps as a lazy
``datasets.IterableDataset`` pipeline, so memory holds a few buffers, never the data:

1. **read and encode** (:func:`stream_source`, one generator per source): rows from the file
   (a hub dataset is opened with ``streaming=True``) go through
   :func:`~sftune.data.readers.iter_conversations` (the same checks as ``sftune prepare``; bad
   rows are counted in a :class:`~sftune.data.report.DataReport` with their file:line) and
   :meth:`~sftune.data.tokenize.Encoder.encode_many`, :data:`CHUNK` conversations at a time
   (the same ``input_ids`` and ``labels``: masks are made once, by the same code);
2. **mix** (:func:`mix_streams`): ``datasets.interleave_datasets`` with probabilities from the
   sources' shares and weights;
3. **shuffle** in a buffer of :data:`SHUFFLE_BUFFER` samples (``IterableDataset.shuffle``);
4. **pack** (:func:`pack_stream`): best-fit-decreasing (:func:`~sftune.data.packing.pack_rows`)
   over every :data:`PACK_BUFFER` samples, into rows with ``seq_lengths`` that the trainer's
   ``PackingCollator`` batches as it batches rows packed in memory.

What differs from the in-memory path, and why:

- A stream has no length, so ``max_steps`` says when training ends. Each source is read pass
  after pass without end, so the Trainer never sees the data run out.
- Bad rows are reported as they are met: the report holds the counts so far (first pass only;
  later passes meet the same rows), is logged every :data:`LOG_EVERY` rows, at the end of the
  pass or when training stops reading, and the run's ``run_info.json`` gets the counts reached.
- Mixing: sizes are unknown, so a ``weight`` is a relative rate (weight 2 = twice as many rows
  as a weight-1 source), not a multiple of the source's size; shares mean what they mean in
  memory (a source with share 0.15 is 15% of the rows).
- Resuming: the Trainer skips the batches already trained by reading the stream again up to
  that point (no training, but reading and tokenizing). The pipeline is deterministic (seeded
  shuffle and mixing), so the resumed run sees the batches an uninterrupted one would, in any
  pass over the data (the stream is endless, so the Trainer's count of batches to skip is
  never cut by the end of an "epoch").
- Several processes: every process reads the same seeded stream and keeps its share of each
  batch (accelerate's ``IterableDatasetShard``; ``training_arguments`` turns ``dispatch_batches``
  off, because rank 0 sending the batches needs them padded to one length). Reading is repeated
  in every process; rank 0's report goes into ``run_info.json``.
- Held-out data: ``eval_data`` is prepared in memory as usual; ``eval_split`` is refused (it
  needs the whole dataset).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator

from ..config import ConfigError, DataSource, SFTConfig
from .files import source_kind
from .hub import dataset_rows, load_hub
from .mixing import row_counts
from .packing import _pack_batch
from .prepare import CHUNK
from .readers import iter_conversations
from .report import DataError, DataReport
from .tokenize import Encoder

log = logging.getLogger("sftune")

#: Samples held by the shuffle buffer (about 1000 x the mean sample size in memory).
SHUFFLE_BUFFER = 1000
#: Samples packed together: the bins are filled best-fit within each buffer of this many samples.
PACK_BUFFER = 512
#: Rows read between two log lines with the counts so far.
LOG_EVERY = 100_000
#: Stand-in size for every source when turning shares and weights into probabilities (see :func:`mix_streams`).
_NOMINAL_SIZE = 1_000_000


def _features(packed: bool):
    import datasets

    ints = datasets.List(datasets.Value("int32"))
    last = {"seq_lengths": ints} if packed else {"source": datasets.Value("string")}
    return datasets.Features({"input_ids": ints, "labels": ints, **last})


def stream_source(source: DataSource, encoder: Encoder, report: DataReport, *, entry: dict | None = None,
                  default_format: str = "auto", system_prompt: str | None = None, repeat: bool = False):
    """One source as an ``IterableDataset`` of samples (``input_ids``, ``labels``, ``source``), in file order.

    Nothing is read until the dataset is iterated. ``report`` gets the first pass's counts; the
    dict ``entry`` (for ``run_info.json``) is refreshed after every :data:`CHUNK` conversations
    with ``report.to_dict()`` plus ``passes`` and ``samples_streamed``. ``repeat=True`` starts
    the next pass when one ends, without end (training stops at ``max_steps``).

    For a file holding ``{"text": "hello"}`` and then ``{"text": ""}``, the stream yields one
    sample with ``source`` ``"a.jsonl:1"`` and the report counts ``{"empty text": 1}`` with the
    example location ``a.jsonl:2`` (tests/data/test_streaming.py runs this).
    """
    import datasets

    if source_kind(source.path) == "json":
        log.warning("%s: a .json array is read whole, even with --streaming; write it as .jsonl to stream it", source.path)
    entry = entry if entry is not None else {}
    entry.update({"passes": 0, "samples_streamed": 0})
    state = _StreamState(source, encoder, report, entry, {"default_format": default_format, "system_prompt": system_prompt}, repeat)
    return datasets.IterableDataset.from_generator(_samples, features=_features(packed=False), gen_kwargs={"state": state})


class _StreamState:
    """What one source's generator works with: the source, its encoder, its report and its ``run_info`` entry.

    ``datasets`` fingerprints ``gen_kwargs`` by pickling them, and an encoder (a compiled Jinja
    template, a tokenizer) cannot be pickled. A stream is never cached, so its identity is the
    fingerprint; unpickling one (sending the stream to a DataLoader worker started with
    ``spawn``) is refused with the fix, since its report would then never come back; a deep
    copy is the same state.
    """

    def __init__(self, source: DataSource, encoder: Encoder, report: DataReport, entry: dict, read: dict, repeat: bool):
        self.source, self.encoder, self.report, self.entry, self.read = source, encoder, report, entry, read
        self.repeat = repeat

    def __reduce__(self):
        return (_not_in_another_process, (self.source.path, id(self)))

    def __deepcopy__(self, memo):
        # datasets copies a pipeline's iterables when it shuffles or interleaves them; the copies
        # must keep counting into the same report.
        return self


def _not_in_another_process(path: str, _key: int):
    raise DataError("a streamed data source cannot be sent to another process", path,
                    fix="keep dataloader_num_workers at 0 with --streaming (reading is lazy and runs in the training process)")


def _samples(state: _StreamState) -> Iterator[dict]:
    # The generator behind stream_source: one pass over the source, or pass after pass.
    while True:
        yield from _one_pass(state)
        if not state.repeat:
            return


def _one_pass(state: _StreamState) -> Iterator[dict]:
    # The first pass counts into `report`; a later pass (repeating, or a second look at the
    # stream) meets the same rows again, so it gets a throw-away report with the same strictness.
    source, encoder, report, entry, read = state.source, state.encoder, state.report, state.entry, state.read
    first = entry["passes"] == 0
    entry["passes"] += 1
    rep = report if first else DataReport(strict=report.strict)
    rows = dataset_rows(load_hub(source.path, source.split, streaming=True), source.path) if source_kind(source.path) == "hub" else None
    convs = iter_conversations(source, rep, rows=rows, **read)
    next_log = LOG_EVERY
    try:
        while chunk := list(itertools.islice(convs, CHUNK)):
            samples = encoder.encode_many(chunk, rep)
            rep.keep(len(samples))
            entry["samples_streamed"] += len(samples)
            if first:
                entry.update(rep.to_dict())
                if rep.rows_in >= next_log:
                    log.info("data %s (streaming, so far): %s", source.path, rep.summary().splitlines()[0])
                    next_log += LOG_EVERY
            yield from samples
    except GeneratorExit:  # the reader stopped before the end: training reached max_steps
        if first:
            log.info("data %s (streaming, stopped after the rows below): %s", source.path, rep.summary())
        raise
    if first:
        rep.notes.extend(encoder.warnings(rep))
        entry.update(rep.to_dict())
        log.info("data %s (streaming, first pass done): %s", source.path, rep.summary())
    if rep.kept == 0:
        raise DataError("no training rows left after reading and filtering", source.path,
                        fix="see the counts of dropped rows above (--strict stops at the first bad row)")


def mix_streams(streams: list, weights: list, shares: list, seed: int = 42):
    """Interleave sample streams in the proportions the shares and weights ask for. Returns ``(dataset, info)``.

    Shares mean what they mean in memory (:func:`sftune.data.mixing.row_counts`): a source with
    share 0.15 gives 15% of the rows. Sizes are unknown while streaming, so every source counts
    as the same size and a weight is a relative rate. The mixture ends when every source has run
    out at least once (smaller sources repeat); in training the sources repeat without end
    (:func:`streaming_data`), and ``max_steps`` ends it.

    >>> import datasets
    >>> a = datasets.IterableDataset.from_generator(lambda: ({"x": "a"} for _ in range(85)))
    >>> b = datasets.IterableDataset.from_generator(lambda: ({"x": "b"} for _ in range(10)))
    >>> ds, info = mix_streams([a, b], [None, None], [None, 0.15], seed=0)
    >>> [s["probability"] for s in info["sources"]]
    [0.85, 0.15]
    """
    import datasets

    counts = row_counts([_NOMINAL_SIZE] * len(streams), list(weights), list(shares))
    total = sum(counts)
    if total == 0:
        raise ValueError("every source has weight 0: nothing to train on")
    probs = [c / total for c in counts]
    # A source with probability 0 would never run out, so "all_exhausted" would never stop.
    used = [i for i, p in enumerate(probs) if p > 0]
    mixed = datasets.interleave_datasets(
        [streams[i] for i in used], probabilities=[probs[i] for i in used], seed=seed, stopping_strategy="all_exhausted"
    )
    info = {
        "streaming": True, "seed": seed, "stopping_strategy": "all_exhausted",
        "sources": [{"probability": round(p, 4), "requested_share": s, "weight": w} for p, w, s in zip(probs, weights, shares)],
    }
    return mixed, info


def pack_stream(ds, max_length: int, buffer: int = PACK_BUFFER, stats: dict | None = None):
    """Pack a sample stream on the fly: every ``buffer`` samples best-fit into rows of at most ``max_length`` tokens.

    Rows hold ``input_ids``, ``labels`` and ``seq_lengths``, as :func:`sftune.data.packing.pack`
    makes them, so the same collator batches them. ``stats`` (a dict) is kept up to date with
    the rows, samples and tokens packed so far and how full the rows are.

    >>> import datasets
    >>> rows = [{"input_ids": [0] * n, "labels": [1] * n, "source": "a"} for n in (5, 3, 2, 4)]
    >>> ds = datasets.IterableDataset.from_generator(lambda: iter(rows), features=_features(packed=False))
    >>> stats = {}
    >>> [r["seq_lengths"] for r in pack_stream(ds, max_length=7, buffer=4, stats=stats)]
    [[5, 2], [4, 3]]
    >>> stats
    {'max_length': 7, 'buffer': 4, 'rows': 2, 'samples': 4, 'tokens': 14, 'fill': 1.0}
    """
    if not max_length:
        raise ValueError("packing needs max_length (the packed row length), e.g. --max-length 1024")
    stats = stats if stats is not None else {}
    stats.update({"max_length": max_length, "buffer": buffer, "rows": 0, "samples": 0, "tokens": 0, "fill": 0.0})
    return ds.map(
        _pack_counted, batched=True, batch_size=buffer, remove_columns=list(ds.column_names),
        features=_features(packed=True), fn_kwargs={"max_length": max_length, "stats": stats},
    )


def _pack_counted(batch: dict, max_length: int, stats: dict) -> dict:
    out = _pack_batch(batch, max_length)  # the in-memory packer's own bins, over this buffer only
    stats["rows"] += len(out["seq_lengths"])
    stats["samples"] += sum(len(lens) for lens in out["seq_lengths"])
    stats["tokens"] += sum(sum(lens) for lens in out["seq_lengths"])
    stats["fill"] = round(stats["tokens"] / (stats["rows"] * max_length), 4) if stats["rows"] else 0.0
    return out


def streaming_data(cfg: SFTConfig, tokenizer, template: str):
    """The streaming data stage: every source streamed, mixed, shuffled in a buffer and packed. Returns ``(dataset, info)``.

    ``info`` has the per-source reports (``sources``), the ``mixture`` and the ``packing``
    counters, as the in-memory stage; its dicts are updated in place while training reads the
    stream, so what is saved at the end holds the counts reached.
    """
    if cfg.max_steps is None or cfg.max_steps <= 0:
        fix = "pass --max-steps N (optimizer steps; `max_steps:` in a config), e.g. --max-steps 1000"
        raise ConfigError(f"--streaming needs --max-steps: a stream has no length, so epochs cannot be counted; {fix}",
                          field="max_steps", fix=fix)
    if cfg.eval_split > 0 and not cfg.eval_data:
        fix = "hold out rows in a file of your own and pass it with --eval-data FILE (it is prepared in memory)"
        raise ConfigError(f"--eval-split needs the whole training set, which --streaming never holds; {fix}", field="eval_split", fix=fix)
    if not cfg.data:
        raise ValueError("no training data given: pass --data FILE (or `data:` in the config)")
    if cfg.training_args.get("dataloader_num_workers", 0):
        # A worker would read its own copy of the stream, and its counts of bad rows would stay there.
        raise ConfigError("--streaming reads in the training process; dataloader_num_workers must be 0",
                          field="training_args", fix="drop dataloader_num_workers from training_args")
    if cfg.group_by_length:
        log.warning("group_by_length has no effect with --streaming (samples come in stream order)")
    streams, entries = [], []
    for src in cfg.data:
        report = DataReport(strict=cfg.strict)
        entry = {"path": src.path, "streaming": True, **report.to_dict()}
        encoder = Encoder(tokenizer, template, cfg.mask, cfg.max_length, template_kwargs=cfg.template_kwargs, reasoning=cfg.reasoning)
        # Endless (pass after pass): the Trainer then never sees the data end, so resuming skips
        # batches within one deterministic stream and lands exactly where the run stopped.
        streams.append(stream_source(src, encoder, report, entry=entry, default_format=cfg.format,
                                     system_prompt=cfg.system_prompt, repeat=True))
        entries.append(entry)
    info: dict = {"streaming": True, "sources": entries, "mixture": None}
    ds = streams[0]
    if len(streams) > 1:
        try:
            ds, info["mixture"] = mix_streams(streams, [s.weight for s in cfg.data], [s.share for s in cfg.data], seed=cfg.seed)
        except ValueError as e:
            raise ConfigError(f"data mixture of {[s.path for s in cfg.data]}: {e}") from None
        for src, row in zip(cfg.data, info["mixture"]["sources"]):
            log.info("mixture (streaming): %s -> %.1f%% of the samples", src.path, 100 * row["probability"])
    ds = ds.shuffle(seed=cfg.seed, buffer_size=SHUFFLE_BUFFER)
    if cfg.packing:
        info["packing"] = {}
        ds = pack_stream(ds, cfg.max_length, stats=info["packing"])
    else:
        ds = ds.remove_columns(["source"])  # file:line is for reports; the collators take tensors only
    log.info("data: streaming %d source(s); nothing is read before training starts", len(cfg.data))
    return ds, info
