"""Mixing: exact counts for shares and weights, even over-sampling, determinism, clear errors."""

from __future__ import annotations

from collections import Counter

import datasets
import pytest

from sftune.data.mixing import mix


def _ds(tag: str, n: int) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"x": [f"{tag}{i}" for i in range(n)]})


def test_replay_share_is_realised_exactly():
    ds, info = mix([_ds("a", 170), _ds("r", 10)], [None, None], [None, 0.15], seed=1)
    tags = Counter(x[0] for x in ds["x"])
    assert tags == {"a": 170, "r": 30}  # 170 / 0.85 = 200 rows, 15% of them replay
    assert [s["share"] for s in info["sources"]] == [0.85, 0.15]
    assert info["sources"][1]["times_each_row"] == 3.0


def test_oversampling_is_even_and_undersampling_without_repeats():
    ds, _ = mix([_ds("a", 4), _ds("b", 10)], [None, None], [0.5, 0.5], seed=0)  # 14 rows: 7 each
    counts = Counter(ds["x"])
    a = {k: v for k, v in counts.items() if k.startswith("a")}
    assert sum(a.values()) == 7 and set(a.values()) <= {1, 2} and len(a) == 4
    b = {k: v for k, v in counts.items() if k.startswith("b")}
    assert sum(b.values()) == 7 and set(b.values()) == {1}


def test_weights_multiply_natural_size():
    ds, info = mix([_ds("a", 10), _ds("b", 10)], [2.0, 0.5], [None, None], seed=0)
    assert Counter(x[0] for x in ds["x"]) == {"a": 20, "b": 5}
    assert info["rows"] == 25


def test_deterministic_for_a_seed_and_shuffled():
    args = ([_ds("a", 50), _ds("b", 7)], [None, None], [None, 0.3])
    one, _ = mix(*args, seed=3)
    two, _ = mix(*args, seed=3)
    other, _ = mix(*args, seed=4)
    assert one["x"] == two["x"] and one["x"] != other["x"]
    assert one["x"][:50] != sorted(one["x"][:50])  # interleaved, not a concatenation


@pytest.mark.parametrize(
    "weights, shares, match",
    [
        ([None, None], [0.6, 0.6], "add up to 1"),
        ([None, None], [None, 1.0], "leaving nothing"),
        ([1.0, None], [0.5, None], "either a weight or a share"),
        ([-1.0, None], [None, None], "weight must be >= 0"),
    ],
)
def test_bad_mixtures_are_explained(weights, shares, match):
    with pytest.raises(ValueError, match=match):
        mix([_ds("a", 5), _ds("b", 5)], weights, shares, seed=0)


def test_empty_source_is_named():
    with pytest.raises(ValueError, match="data source 2 has no rows"):
        mix([_ds("a", 5), _ds("b", 0)], None, [None, 0.2], seed=0)
