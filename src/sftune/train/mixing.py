"""Mixing several datasets into one: weights, target shares, replay.

Each source contributes a number of rows decided up front, then sampled deterministically:

- a source with a ``share`` gets that fraction of the final mixture (e.g. 0.15 of general text
  as replay against forgetting), over-sampled (whole repeats plus a random remainder) or
  under-sampled (a random subset) to reach it;
- a source with a ``weight`` (default 1) contributes ``weight x its size`` rows, so weight 2
  shows every row twice and 0.5 half of them.

Whole repeats before random extra rows keep over-sampling even: no row is seen three times
while another is seen once.

>>> import datasets
>>> a = datasets.Dataset.from_dict({"x": list(range(85))})
>>> b = datasets.Dataset.from_dict({"x": list(range(100, 110))})
>>> ds, info = mix([a, b], [None, None], [None, 0.15], seed=0)
>>> len(ds), [s["rows_out"] for s in info["sources"]]
(100, [85, 15])
"""

from __future__ import annotations

import numpy as np


def _counts(sizes: list[int], weights: list[float | None], shares: list[float | None]) -> list[int]:
    for i, (n, w, s) in enumerate(zip(sizes, weights, shares)):
        if n == 0:
            raise ValueError(f"data source {i + 1} has no rows left to mix")
        if w is not None and s is not None:
            raise ValueError(f"data source {i + 1}: give either a weight or a share, not both")
        if w is not None and w < 0:
            raise ValueError(f"data source {i + 1}: weight must be >= 0, got {w}")
    share_total = sum(s for s in shares if s is not None)
    free = [i for i, s in enumerate(shares) if s is None]
    if not free:
        if abs(share_total - 1.0) > 1e-6:
            raise ValueError(f"when every source has a share the shares must add up to 1 (they add up to {share_total:g})")
        total = sum(sizes)
    else:
        if share_total >= 1:
            raise ValueError(
                f"the shares add up to {share_total:g}, leaving nothing for the sources without a share; keep them below 1"
            )
        natural = sum(sizes[i] * (1.0 if weights[i] is None else weights[i]) for i in free)
        total = natural / (1 - share_total)
    out = []
    for n, w, s in zip(sizes, weights, shares):
        if s is not None:
            out.append(int(round(total * s)))
        else:
            out.append(int(round(n * (1.0 if w is None else w))))
    return out


def sample_indices(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` indices into ``range(n)``: whole passes, then a random subset for the rest."""
    reps, rest = divmod(count, n)
    parts = [np.arange(n)] * reps + [rng.choice(n, size=rest, replace=False)]
    return np.concatenate(parts).astype(np.int64)


def mix(datasets_, weights, shares, seed: int = 42):
    """Mix ``datasets.Dataset`` objects with the same columns. Returns ``(dataset, info)``.

    The result is shuffled (seeded); ``info`` reports, per source, rows in, rows out, the
    realised share and how many times each row is used on average.
    """
    import datasets

    sizes = [len(d) for d in datasets_]
    weights = list(weights) if weights is not None else [None] * len(sizes)
    shares = list(shares) if shares is not None else [None] * len(sizes)
    counts = _counts(sizes, weights, shares)
    rng = np.random.default_rng(seed)
    parts = [d.select(sample_indices(len(d), c, rng)) for d, c in zip(datasets_, counts) if c > 0]
    mixed = datasets.concatenate_datasets(parts).shuffle(seed=seed).flatten_indices()
    total = max(1, sum(counts))
    info = {
        "rows": sum(counts),
        "seed": seed,
        "sources": [
            {
                "rows_in": n, "rows_out": c, "share": round(c / total, 4), "times_each_row": round(c / n, 3),
                "requested_share": s, "weight": w,
            }
            for n, c, w, s in zip(sizes, counts, weights, shares)
        ],
    }
    return mixed, info
