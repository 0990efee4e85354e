"""Dedup on hand-made rows with known exact and near duplicates."""

from __future__ import annotations

import random

import numpy as np
import pytest
from curate_helpers import chat

from sftune.config import ConfigError
from sftune.curate.dedup import DedupOptions, MinHasher, ShingleSets, dedup_conversations, exact_duplicates
from sftune.curate.io import CurateReport

A = ("Photosynthesis is the process by which green plants and some other organisms use sunlight to synthesize "
     "foods from carbon dioxide and water, generating oxygen as a by-product of the reaction in their leaves.")
B = ("A binary search repeatedly divides a sorted list in half, comparing the middle element with the target value "
     "and discarding the half that cannot contain it, so it needs only logarithmic time in the size of the list.")
C = ("The French Revolution began in 1789 and led to the end of the monarchy, the rise of Napoleon, and deep changes "
     "in the political and social order of Europe that lasted well into the following century.")
Q1, Q2, Q3 = "Explain photosynthesis.", "How does binary search work?", "What was the French Revolution?"


def one_word_changed(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


ROWS = [
    (chat(Q1, A), None),  # 0: original
    (chat(Q1.upper(), "  " + A.replace(",", " ,").replace(" ", "  ") + "!!"), "exact_duplicate"),  # 1: case/punct/space only
    (chat(Q1, one_word_changed(A, "green", "most")), "near_duplicate"),  # 2: one word changed
    (chat(Q2, B), None),  # 3
    (chat(Q2, B), "exact_duplicate"),  # 4: verbatim copy
    (chat(Q3, C), None),  # 5
    (chat(Q2, one_word_changed(B, "middle", "central") + " Neat."), "near_duplicate"),  # 6: a word changed, two added
    (chat(Q3, "The French Revolution was a period of upheaval in France."), None),  # 7: same prompt, other answer
]


def run(rows, **opts):
    report = CurateReport(command="dedup")
    kept = dedup_conversations([r for r, _ in rows], DedupOptions(**opts), report)
    return kept, report


def test_exact_and_near_duplicates_exact_counts():
    kept, report = run(ROWS)
    assert dict(report.dropped) == {"exact_duplicate": 2, "near_duplicate": 2}
    assert kept == [r for r, why in ROWS if why is None]  # first occurrences, input order
    assert report.rows_in == 8 and report.kept == 4
    assert any("row 0" in e for e in report.examples["exact_duplicate"])
    assert any("similar to row 3" in e for e in report.examples["near_duplicate"])


def test_near_duplicates_are_real_jaccard_above_threshold():
    from sftune.curate.text import full_text, normalize

    texts = [full_text(r) for r, _ in ROWS]

    sets = ShingleSets([normalize(t) for t in texts], "word", 3)
    assert sets.jaccard(0, 2) >= 0.8 and sets.jaccard(3, 6) >= 0.8
    assert sets.jaccard(0, 3) < 0.1


def test_options_switch_parts_off_and_threshold_matters():
    _, report = run(ROWS, near=False)
    assert dict(report.dropped) == {"exact_duplicate": 2}
    _, report = run(ROWS, exact=False)  # exact copies are near duplicates with similarity 1
    assert dict(report.dropped) == {"near_duplicate": 4}
    _, report = run(ROWS, threshold=0.99)
    assert dict(report.dropped) == {"exact_duplicate": 2}


def test_key_prompt_compares_prompts_only():
    kept, report = run(ROWS, key="prompt", near=False)
    # Prompts: Q1 x3 (one upper-cased), Q2 x3, Q3 x2 -> 3 distinct.
    assert len(kept) == 3 and dict(report.dropped) == {"exact_duplicate": 5}


def test_deterministic_across_runs_and_independent_of_hash_seed():
    kept1, r1 = run(ROWS)
    kept2, r2 = run(ROWS)
    assert kept1 == kept2 and r1.examples == r2.examples
    h = MinHasher(num_perm=64)
    assert (h.signatures([A, B]) == MinHasher(num_perm=64).signatures([A, B])).all()
    # Pinned values: crc32 + fixed-seed numpy, never Python's salted hash().
    assert h.signatures(["hello world again"])[0, :3].tolist() == MinHasher(num_perm=64).signatures(["hello world again"])[0, :3].tolist()


def test_keep_first_occurrence_not_the_longest():
    rows = [(chat(Q2, B[:150]), None), (chat(Q2, B), "near")]  # the later, longer one goes
    kept, _ = run(rows, threshold=0.6)
    assert kept == [rows[0][0]]


def test_minhash_estimates_jaccard():
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(500)]
    h = MinHasher(num_perm=256)
    for _ in range(20):
        base = rng.choices(vocab, k=80)
        other = list(base)
        for _ in range(rng.randint(1, 15)):
            other[rng.randrange(80)] = rng.choice(vocab)
        a, b = " ".join(base), " ".join(other)
        s = h.signatures([a, b])
        est = float((s[0] == s[1]).mean())
        sets = ShingleSets([a, b], "word", 3)
        assert abs(est - sets.jaccard(0, 1)) < 0.12


def test_signatures_of_a_chunk_equal_one_by_one():
    texts = [A, B, "", "x", C, "短文本", A + " " + C]
    for shingle, n in (("word", 3), ("char", 5)):
        h = MinHasher(num_perm=32, shingle=shingle, ngram=n)
        together = h.signatures(texts)
        alone = np.vstack([h.signatures([t]) for t in texts])
        assert (together == alone).all()


def test_cjk_near_duplicates_with_char_shingles():
    zh = "光合作用是绿色植物利用阳光把二氧化碳和水合成有机物并释放氧气的过程，它发生在叶绿体中。"
    rows = [(chat("什么是光合作用？", zh), None), (chat("什么是光合作用？", zh.replace("绿色", "大多")), "near")]
    kept, report = run(rows, shingle="char", ngram=5, threshold=0.7)
    assert len(kept) == 1 and dict(report.dropped) == {"near_duplicate": 1}
    kept, _ = run(rows, shingle="word", ngram=3, threshold=0.7)  # words: each CJK character is a word
    assert len(kept) == 1


def test_exact_duplicates_normalisation():
    assert exact_duplicates(["Hello, World!", "hello world", "hello   world?", "hello there"]) == {1: 0, 2: 0}


def test_bad_options():
    with pytest.raises(ConfigError):
        DedupOptions(key="title")
    with pytest.raises(ConfigError):
        DedupOptions(threshold=0)
    with pytest.raises(ConfigError):
        DedupOptions(shingle="sentence")
