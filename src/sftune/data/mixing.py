"""Mixing several datasets into one: weights, target shares, replay.

Each source contributes a number of rows decided up front, then sampled deterministically:

- a source with a ``share`` gets that fraction of the final mixture (e.g. 0.15 of general text
  as replay against forgetting), over-sampled (whole repeats plus a random remainder) or
  under-sampled (a random subset) to reach it;
- a source with a ``weight`` (default 1) contributes ``weight x its size`` rows, so weight 2
  shows every row twice and 0.5 half of them.

Whole repeats before random extra rows keep over-sampling even: no row is seen three times
while another is seen once.

Mixing turns prepared datasets into one dataset: a data step, run before the trainer (by
``sftune train`` for several ``--data`` sources, and by ``sftune curate mix`` on conversations).

>>> import datasets
>>> a = datasets.Dataset.from_dict({"x": list(range(85))})
>>> b = datasets.Dataset.from_dict({"x": list(range(100, 110))})
>>> ds, info = mix([a, b], [None, None], [None, 0.15], seed=0)
>>> len(ds), [s["rows_out"] for s in info["sources"]]
(100, [85, 15])
"""

from __future__ import annotations

import numpy as np


def row_counts(sizes: list[int], weights: list[float | None], shares: list[float | None]) -> list[int]:
    """Rows each source contributes, given the sources' sizes and each one's weight or share.

    >>> row_counts([85, 10], [None, None], [None, 0.15])  # 85 rows are 85% of 100: replay gets 15
    [85, 15]
    >>> row_counts([4, 6], [2, 0.5], [None, None])  # every row twice, half the rows
    [8, 3]
    >>> row_counts([4, 6], [None, None], [0.5, 0.5])  # shares only: the total stays 10
    [5, 5]
    """
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
    """``count`` indices into ``range(n)``: whole passes, then a random subset for the rest.

    >>> sample_indices(3, 7, np.random.default_rng(0)).tolist()  # two whole passes, then one random row
    [0, 1, 2, 0, 1, 2, 2]
    >>> sample_indices(5, 2, np.random.default_rng(0)).tolist()  # under-sampling: a random subset
    [3, 4]
    """
    reps, rest = divmod(count, n)
    parts = [np.arange(n)] * reps + [rng.choice(n, size=rest, replace=False)]
    return np.concatenate(parts).astype(np.int64)


def mix(datasets_, weights, shares, seed: int = 42):
    """Mix ``datasets.Dataset`` objects with the same columns. Returns ``(dataset, info)``.

    The result is shuffled (seeded); ``info`` reports, per source, rows in, rows out, the
    realised share and how many times each row is used on average.

    >>> import datasets
    >>> a = datasets.Dataset.from_dict({"x": ["a0", "a1", "a2"]})
    >>> b = datasets.Dataset.from_dict({"x": ["b0", "b1"]})
    >>> ds, info = mix([a, b], [2, None], [None, None], seed=0)
    >>> sorted(ds["x"])  # a weight of 2 shows every row of ``a`` twice
    ['a0', 'a0', 'a1', 'a1', 'a2', 'a2', 'b0', 'b1']
    >>> info["sources"][0]
    {'rows_in': 3, 'rows_out': 6, 'share': 0.75, 'times_each_row': 2.0, 'requested_share': None, 'weight': 2}
    """
    import datasets

    sizes = [len(d) for d in datasets_]
    weights = list(weights) if weights is not None else [None] * len(sizes)
    shares = list(shares) if shares is not None else [None] * len(sizes)
    counts = row_counts(sizes, weights, shares)
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
