"""Packing: several samples per row, with no attention and no loss across sample boundaries.

Packing is a data step: :func:`pack` turns the prepared (and mixed) samples into packed rows
before the trainer sees them, cached like any ``datasets`` transform and described by
:func:`pack_stats`; the trainer only batches the rows (:class:`PackingCollator`).

Samples are packed best-fit-decreasing into rows of at most ``max_length`` tokens. A packed row
keeps ``position_ids`` that restart at 0 for every sample; that is all the model needs:

* with ``sdpa``/``eager`` attention, transformers (``masking_utils.find_packed_sequence_indices``)
  detects the restarts when no ``attention_mask`` and no KV cache are passed (so the forward
  needs ``use_cache=False``) and builds a block-diagonal causal mask per row, so a token never
  attends to another sample;
* with FlashAttention 2/3 the same ``position_ids`` select its variable-length kernel.

The label shift must not cross a boundary either: the first token of a sample would otherwise
be "predicted" from the previous sample's last token. Unpacked, a sample's first label is never
used (the causal shift drops it), so the packer sets it to ``-100``; the trained-token count is
then exactly the unpacked one.

>>> rows = [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}, {"input_ids": [4, 5], "labels": [4, 5]},
...         {"input_ids": [6, 7, 8, 9], "labels": [6, 7, 8, 9]}]
>>> pack_rows(rows, max_length=6)
[[2, 1], [0]]
>>> b = PackingCollator(pad_token_id=0)([[rows[2], rows[1]], [rows[0]]])
>>> b["input_ids"].tolist()
[[6, 7, 8, 9, 4, 5], [1, 2, 3, 0, 0, 0]]
>>> b["position_ids"].tolist()
[[0, 1, 2, 3, 0, 1], [0, 1, 2, 0, 1, 2]]
>>> b["labels"].tolist()
[[-100, 7, 8, 9, -100, 5], [-100, 2, 3, -100, -100, -100]]
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import torch

from .collate import PaddingCollator
from .tokenize import IGNORE_INDEX


def pack_rows(rows, max_length: int) -> list[list[int]]:
    """Best-fit-decreasing: indices of ``rows`` grouped into bins of at most ``max_length`` tokens.

    Longest samples first, each into the fullest bin it still fits in (found by bisection over
    bins sorted by free space), else a new bin. Samples longer than ``max_length`` are an error:
    cutting them here would silently train on a different sample than the one prepared.

    >>> pack_rows([{"input_ids": [0] * n} for n in (5, 3, 2, 4)], max_length=7)
    [[0, 2], [3, 1]]
    """
    lengths = [len(r["input_ids"]) for r in rows]
    too_long = [i for i, n in enumerate(lengths) if n > max_length]
    if too_long:
        i = too_long[0]
        raise ValueError(
            f"packing: sample {i} has {lengths[i]} tokens, more than max_length={max_length} "
            f"({len(too_long)} such samples); prepare the data with the same --max-length, or raise it"
        )
    order = sorted(range(len(rows)), key=lambda i: -lengths[i])  # stable: ties keep dataset order
    bins: list[list[int]] = []
    free_keys: list[tuple[int, int]] = []  # (free space, bin index), sorted
    for i in order:
        n = lengths[i]
        k = bisect.bisect_left(free_keys, (n, -1))  # the tightest bin with free >= n
        if k < len(free_keys):
            free, b = free_keys.pop(k)
            bins[b].append(i)
            bisect.insort(free_keys, (free - n, b))
        else:
            bins.append([i])
            bisect.insort(free_keys, (max_length - n, len(bins) - 1))
    return bins


def pack(dataset, max_length: int, seed: int = 0):
    """The packing step: a dataset of samples -> a dataset of packed rows, ready for the trainer.

    Rows hold ``input_ids``, ``labels`` and ``seq_lengths`` (the samples' lengths, in order);
    other columns (``source``) are dropped. Bins are :func:`pack_rows`'; the row order is then
    shuffled with ``seed`` (the Trainer's sampler shuffles again), because best-fit-decreasing
    leaves the longest samples in the first bins. It runs as a ``datasets`` ``map``, so for a
    dataset read from disk (a prepared dataset, or a mixture of them) the result is cached next
    to it, keyed by the dataset's fingerprint, ``max_length`` and ``seed``.

    >>> from datasets import Dataset
    >>> ds = Dataset.from_list([{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}, {"input_ids": [4, 5], "labels": [4, 5]},
    ...                         {"input_ids": [6, 7, 8, 9], "labels": [6, 7, 8, 9]}])
    >>> packed = pack(ds, max_length=6)
    >>> sorted(zip(packed["input_ids"], packed["seq_lengths"]))
    [([1, 2, 3], [3]), ([6, 7, 8, 9, 4, 5], [4, 2])]
    >>> pack_stats(packed, max_length=6)
    {'max_length': 6, 'rows': 2, 'samples': 3, 'tokens': 9, 'fill': 0.75, 'samples_per_row': {'mean': 1.5, 'max': 2}}
    >>> format_pack_stats(pack_stats(packed, max_length=6))
    'packing: 3 samples -> 2 rows of at most 6 tokens (75.0% full, 1.5 samples per row, at most 2)'
    """
    if not max_length:
        raise ValueError("packing needs max_length (the packed row length), e.g. --max-length 1024")
    packed = dataset.map(
        _pack_batch, batched=True, batch_size=None, remove_columns=dataset.column_names,
        fn_kwargs={"max_length": max_length}, desc="packing",
    )
    return packed.shuffle(seed=seed).flatten_indices()


def _pack_batch(batch: dict, max_length: int) -> dict:
    # The whole dataset is one batch (batch_size=None): bins need every sample's length.
    rows = [{"input_ids": ids, "labels": lab} for ids, lab in zip(batch["input_ids"], batch["labels"])]
    out = {"input_ids": [], "labels": [], "seq_lengths": []}
    for b in pack_rows(rows, max_length):
        out["input_ids"].append([t for i in b for t in rows[i]["input_ids"]])
        out["labels"].append([t for i in b for t in rows[i]["labels"]])
        out["seq_lengths"].append([len(rows[i]["input_ids"]) for i in b])
    return out


def pack_stats(packed, max_length: int) -> dict:
    """What packing made of the samples: rows, samples, tokens, how full the rows are.

    ``fill`` is the share of the ``rows x max_length`` token slots holding a real token (1.0: no
    padding at all). See :func:`pack` for an example.
    """
    counts = [len(lens) for lens in packed["seq_lengths"]]
    tokens = sum(sum(lens) for lens in packed["seq_lengths"])
    rows = len(counts)
    return {
        "max_length": max_length,
        "rows": rows,
        "samples": sum(counts),
        "tokens": tokens,
        "fill": round(tokens / (rows * max_length), 4) if rows else 0.0,
        "samples_per_row": {"mean": round(sum(counts) / rows, 2) if rows else 0.0, "max": max(counts, default=0)},
    }


def format_pack_stats(stats: dict) -> str:
    """One line for logs, ``sftune prepare`` and ``sftune inspect``; see :func:`pack` for an example."""
    per_row = stats["samples_per_row"]
    return (
        f"packing: {stats['samples']} samples -> {stats['rows']} rows of at most {stats['max_length']} tokens "
        f"({stats['fill']:.1%} full, {per_row['mean']} samples per row, at most {per_row['max']})"
    )


@dataclass
class PackingCollator:
    """Batch packed rows: pad every row to the longest, restart ``position_ids`` per sample.

    Each item is either a list of samples (``input_ids``/``labels`` dicts) to put in one row, or
    one already packed row with a ``seq_lengths`` list (see :func:`pack`). No
    ``attention_mask`` is returned on purpose: transformers builds the block-diagonal mask from
    the ``position_ids`` only when the 2D mask is absent. The padding tail is one more segment
    (positions from 0, label ``-100``), so it attends only to itself and is never trained.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, items) -> dict[str, torch.Tensor]:
        rows = [self._row(it) for it in items]
        batch = PaddingCollator(self.pad_token_id, self.pad_to_multiple_of)(
            [{"input_ids": ids, "labels": lab} for ids, lab, _ in rows]
        )
        del batch["attention_mask"]  # see the class docstring: position_ids carry the segments
        labels, longest = batch["labels"], batch["input_ids"].shape[1]
        position_ids = torch.zeros_like(batch["input_ids"])  # (R, L)
        for r, (ids, _, lens) in enumerate(rows):
            start = 0
            for n_tok in lens + [longest - len(ids)]:
                position_ids[r, start : start + n_tok] = torch.arange(n_tok)
                if n_tok:
                    labels[r, start] = IGNORE_INDEX  # never predicted from the previous sample
                start += n_tok
        batch["position_ids"] = position_ids
        return batch

    @staticmethod
    def _row(item):
        if isinstance(item, dict):
            return list(item["input_ids"]), list(item["labels"]), list(item.get("seq_lengths") or [len(item["input_ids"])])
        ids = [t for s in item for t in s["input_ids"]]
        lab = [t for s in item for t in s["labels"]]
        return ids, lab, [len(s["input_ids"]) for s in item]
