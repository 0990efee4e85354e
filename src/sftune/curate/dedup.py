"""``sftune curate dedup``: exact and near-duplicate removal, keeping the first occurrence.

Exact duplicates: rows whose normalised text (casefolded, punctuation dropped, whitespace
collapsed; see :func:`sftune.curate.text.normalize`) is the same.

Near duplicates: MinHash signatures over shingles (word n-grams, CJK characters counting as words,
or character n-grams) and LSH banding to find candidate pairs, each verified by the exact Jaccard
similarity of the two shingle sets ``>= threshold``. Rows are visited in
input order; a row is dropped when it is a near duplicate of an earlier *kept* row, so the
first occurrence always survives and the result does not depend on hash-table order.

Why not ``datasketch.MinHash`` per row: it hashes each shingle with SHA-1 in Python and keeps
one object per row; for 100k rows that is minutes. Here the MinHash is vectorised with numpy
over a whole chunk of rows at once (rolling polynomial hash of the shingles, a splitmix64
finaliser, then ``num_perm`` multiply-shift hash functions and a segmented minimum), which is
the same estimator at a fraction of the cost (``benchmarks/dedup_100k.py`` measures both).
The seeds are fixed, so the same input always gives the same output.

>>> texts = ["the cat sat on the mat today", "The cat sat on the mat, today!", "a completely different row here"]
>>> exact_duplicates(texts)
{1: 0}
"""

from __future__ import annotations

import hashlib
import time
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import ConfigError
from ..options.curation import DedupOptions as _DedupOptions
from ..data.conversation import Conversation
from .io import CurateReport, where
from .text import answer_text, full_text, normalize, prompt_text, words

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_POLY = np.uint64(0x100000001B3)  # FNV prime: the rolling-hash base
_ROWS_PER_CHUNK = 8192  # rows whose shingles are hashed together (bounds the per-shingle arrays)
_SHINGLES_PER_BLOCK = 1 << 15  # rows of the (shingles, num_perm) matrix per numpy call: 32k x 128 x 8 B = 32 MiB


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads a polynomial hash over all 64 bits (uint64 arithmetic wraps)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


@dataclass(frozen=True)
class MinHasher:
    """Vectorised MinHash. ``shingle``: ``word`` (n words) or ``char`` (n characters)."""

    num_perm: int = 128
    shingle: str = "word"
    ngram: int = 3
    seed: int = 0

    def __post_init__(self):
        if self.shingle not in ("word", "char"):
            raise ConfigError(f"--shingle {self.shingle!r}: use 'word' or 'char'")
        if self.ngram < 1 or self.num_perm < 2:
            raise ConfigError("--ngram must be >= 1 and --num-perm >= 2")

    @property
    def _params(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        # Odd multipliers: multiply-shift hashing h(x) = (a*x + b) >> 32 over 64-bit words.
        a = rng.integers(1, 2**63, size=self.num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        b = rng.integers(0, 2**63, size=self.num_perm, dtype=np.uint64)
        return a, b

    def _units(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per-row unit hashes (characters or words) concatenated, and each row's unit count (>= ngram)."""
        n = self.ngram
        if self.shingle == "char":
            padded = [t if len(t) >= n else t + "\0" * (n - len(t)) for t in texts]
            units = np.frombuffer("".join(padded).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
            return units, np.fromiter(map(len, padded), dtype=np.int64, count=len(padded))
        all_words: list[str] = []
        counts = np.empty(len(texts), dtype=np.int64)
        for i, t in enumerate(texts):
            w = words(t)
            if len(w) < n:
                w = w + [""] * (n - len(w))
            all_words.extend(w)
            counts[i] = len(w)
        if len(_WORD_IDS) > 2_000_000:  # bound the cache on huge vocabularies
            _WORD_IDS.clear()
        return np.fromiter(map(_WORD_IDS.__getitem__, all_words), dtype=np.uint64, count=len(all_words)), counts

    def signatures(self, texts: list[str]) -> np.ndarray:
        """MinHash signatures, shape (len(texts), num_perm), uint32.

        >>> h = MinHasher(num_perm=64)
        >>> s = h.signatures(["one two three four five six", "one two three four five six", "x y z"])
        >>> bool((s[0] == s[1]).all()), float((s[0] == s[2]).mean()) < 0.2
        (True, True)
        """
        out = np.empty((len(texts), self.num_perm), dtype=np.uint32)
        # Rows go through in chunks so the per-shingle arrays stay small whatever the dataset size.
        for s in range(0, len(texts), _ROWS_PER_CHUNK):
            self._fill(texts[s : s + _ROWS_PER_CHUNK], out[s : s + _ROWS_PER_CHUNK])
        return out

    def _fill(self, texts: list[str], out: np.ndarray) -> None:
        a, b = self._params
        n = self.ngram
        units, counts = self._units(texts)
        # Rolling polynomial hash of every window of n units (windows crossing a row end are cut below).
        h = units[: len(units) - n + 1].copy()
        for j in range(1, n):
            h = h * _POLY + units[j : len(units) - n + 1 + j]
        starts = np.cumsum(counts) - counts
        # Window p belongs to a row when it starts in the row and ends inside it: p in [start, start + count - n].
        n_sh = counts - n + 1
        sh = _mix64(h[_ranges(starts, n_sh)])
        row_of_start = np.cumsum(n_sh) - n_sh  # offset of each row's first shingle in `sh`
        # Rows are processed in blocks so the (shingles, num_perm) matrix stays small.
        bounds = np.cumsum(n_sh)  # end of each row's shingles in `sh`
        r0 = 0
        buf = np.empty((0, self.num_perm), dtype=np.uint64)
        while r0 < len(texts):
            lo = row_of_start[r0]
            r1 = max(r0 + 1, int(np.searchsorted(bounds, lo + _SHINGLES_PER_BLOCK, side="right")))
            hi = bounds[r1 - 1]
            block = sh[lo:hi]
            if buf.shape[0] < len(block):
                buf = np.empty((len(block), self.num_perm), dtype=np.uint64)
            m = buf[: len(block)]
            np.multiply(block[:, None], a[None, :], out=m)
            np.add(m, b[None, :], out=m)
            np.right_shift(m, np.uint64(32), out=m)
            out[r0:r1] = np.minimum.reduceat(m, row_of_start[r0:r1] - lo, axis=0)
            r0 = r1


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + k)`` for each (s, k), vectorised."""
    total = int(lengths.sum())
    offs = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) - np.repeat(offs - starts, lengths)


class _WordIds(dict):
    """word -> 32-bit id, computed once per word (a dict lookup is much faster than hashing again).

    crc32 is stable across processes (unlike ``hash(str)``), so signatures are reproducible.
    """

    def __missing__(self, w: str) -> int:
        v = self[w] = zlib.crc32(w.encode("utf-8")) or 1
        return v


_WORD_IDS = _WordIds()


@lru_cache(maxsize=None)
def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) for LSH around ``threshold``.

    Candidates are verified exactly afterwards, so a false positive only costs a comparison while a
    false negative loses a duplicate: the band shape is chosen with false negatives weighted 19:1
    (for 0.8 and 128 permutations: 16 bands of 8, a pair at similarity 0.8 is a candidate with
    probability 0.95, a pair at 0.3 with probability 0.001).
    """
    from datasketch.lsh import _optimal_param

    return _optimal_param(threshold, num_perm, 0.05, 0.95)


def near_duplicates(
    sigs: np.ndarray,
    threshold: float,
    similarity=None,
    *,
    skip: set[int] | frozenset = frozenset(),
    prefilter: float = 0.15,
) -> dict[int, tuple[int, float]]:
    """``{row: (earlier kept row it duplicates, similarity)}``, visiting rows in order.

    LSH over the signatures proposes candidates among earlier kept rows. ``similarity(i, j)`` (the
    exact Jaccard similarity of the shingle sets) decides; candidates whose signature estimate is
    more than ``prefilter`` below the threshold are not checked (the estimate's standard error at
    128 permutations is about 0.04). Without ``similarity`` the estimate decides. Rows in ``skip``
    (already removed, e.g. exact duplicates) are neither kept nor compared.
    """
    n, num_perm = sigs.shape
    bands, rows = lsh_bands(threshold, num_perm)
    # One 64-bit key per (band, row): a polynomial over the band's values, then mixed.
    keys = []
    for bnd in range(bands):
        part = sigs[:, bnd * rows : (bnd + 1) * rows].astype(np.uint64)
        k = np.zeros(n, dtype=np.uint64)
        for j in range(rows):
            k = k * _POLY + part[:, j]
        keys.append(_mix64(k + np.uint64(bnd)).tolist())
    tables: list[dict] = [{} for _ in range(bands)]
    dups: dict[int, tuple[int, float]] = {}
    for i in range(n):
        if i in skip:
            continue
        cands: set[int] = set()
        for bnd in range(bands):
            hit = tables[bnd].get(keys[bnd][i])
            if hit is not None:
                cands.update(hit)
        if cands:
            c = np.fromiter(sorted(cands), dtype=np.int64, count=len(cands))
            est = (sigs[c] == sigs[i]).mean(axis=1)
            best: tuple[float, int] | None = None
            for j, e in zip(c.tolist(), est.tolist()):
                if similarity is None:
                    sim = e
                elif e >= threshold - prefilter:
                    sim = similarity(i, j)
                else:
                    continue
                if sim >= threshold and (best is None or sim > best[0]):  # most similar; earliest among equals
                    best = (sim, j)
            if best is not None:
                dups[i] = (best[1], best[0])
                continue
        for bnd in range(bands):
            tables[bnd].setdefault(keys[bnd][i], []).append(i)
    return dups


class ShingleSets:
    """Exact shingle sets, built on demand and cached, for verifying candidate pairs."""

    def __init__(self, texts: list[str], shingle: str, ngram: int):
        self.texts, self.shingle, self.n = texts, shingle, ngram
        self._cache: dict[int, frozenset] = {}

    def get(self, i: int) -> frozenset:
        s = self._cache.get(i)
        if s is None:
            t, n = self.texts[i], self.n
            if self.shingle == "char":
                s = frozenset(t[k : k + n] for k in range(max(1, len(t) - n + 1)))
            else:
                w = words(t)
                s = frozenset(tuple(w[k : k + n]) for k in range(max(1, len(w) - n + 1)))
            self._cache[i] = s
        return s

    def jaccard(self, i: int, j: int) -> float:
        a, b = self.get(i), self.get(j)
        return len(a & b) / len(a | b) if a or b else 1.0


def exact_duplicates(texts: list[str], normalized: bool = False) -> dict[int, int]:
    """``{row: first row with the same normalised text}`` (``normalized``: the texts already are)."""
    first: dict[bytes, int] = {}
    dups: dict[int, int] = {}
    for i, t in enumerate(texts):
        k = hashlib.blake2b((t if normalized else normalize(t)).encode("utf-8"), digest_size=16).digest()
        j = first.setdefault(k, i)
        if j != i:
            dups[i] = j
    return dups


KEYS = {"conversation": full_text, "prompt": prompt_text, "answer": lambda c: answer_text(c) or ""}


# The options (and the one ngram default: 3 words or 5 characters) live with the other option groups.
DedupOptions = _DedupOptions


def dedup_conversations(convs: list[Conversation], opts: DedupOptions, report: CurateReport) -> list[Conversation]:
    """Drop exact, then near duplicates; the first occurrence is kept and input order preserved."""
    report.seen(len(convs))
    t0 = time.perf_counter()
    # Normalised once (casefold, no punctuation, single spaces): the exact key and the shingle source.
    normed = [normalize(KEYS[opts.key](c)) for c in convs]
    exact = exact_duplicates(normed, normalized=True) if opts.exact else {}
    for i, j in exact.items():
        report.drop("exact_duplicate", where(convs[i], i), f"same as {where(convs[j], j)}")
    t1 = time.perf_counter()
    near: dict[int, tuple[int, float]] = {}
    if opts.near:
        hasher = MinHasher(opts.num_perm, opts.shingle, opts.ngram, opts.seed)
        # Signatures of the normalised text, so case/punctuation differences don't count as edits.
        sigs = hasher.signatures(normed)
        t2 = time.perf_counter()
        shingles = ShingleSets(normed, opts.shingle, opts.ngram)
        near = near_duplicates(sigs, opts.threshold, shingles.jaccard, skip=set(exact))
        for i, (j, sim) in near.items():
            report.drop("near_duplicate", where(convs[i], i), f"~{sim:.2f} similar to {where(convs[j], j)}")
        bands, rows = lsh_bands(opts.threshold, opts.num_perm)
        report.details["lsh"] = {"bands": bands, "rows_per_band": rows}
        report.details["seconds_minhash"] = round(t2 - t1, 3)
        report.details["seconds_lsh"] = round(time.perf_counter() - t2, 3)
    report.details["seconds_exact"] = round(t1 - t0, 3)
    report.details["options"] = vars(opts).copy()
    out = [c for i, c in enumerate(convs) if i not in exact and i not in near]
    report.keep(len(out))
    return out
