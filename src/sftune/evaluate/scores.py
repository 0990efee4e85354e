"""Reference-based scores for generated answers: exact match, contains, token F1, ROUGE-L.

All four compare *normalised* text (SQuAD-style: Unicode NFKC, lower case, punctuation and the
English articles a/an/the removed, whitespace collapsed). Words are runs of letters/digits; CJK
characters (Chinese, Japanese kana, Korean) are one token each, because those scripts do not
put spaces between words and a whole sentence would otherwise be a single "word".

>>> tokens("The cat sat.")
['cat', 'sat']
>>> tokens("你好，世界!")
['你', '好', '世', '界']
>>> round(token_f1("the cat sat on the mat", "a cat on a mat"), 4)  # P=3/4, R=3/3
0.8571
>>> round(rouge_l("我是 Kestrel", "我叫 Kestrel"), 4)
0.6667
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

#: Score names, in the order reports show them.
SCORE_NAMES = ("exact_match", "contains", "f1", "rouge_l")

_ARTICLES = {"a", "an", "the"}
# One CJK character, or one run of other word characters. \w covers letters and digits of every
# script; the CJK ranges are listed first so they split per character.
_CJK = (
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs (ext. A, unified, compatibility)
    "\uac00-\ud7af"  # Hangul syllables
)
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")


def normalize(text: str) -> str:
    """Compare-ready text: NFKC, lower case, no punctuation, no English articles, single spaces.

    >>> normalize("  The Answer is: 42! ")
    'answer is 42'
    >>> normalize("答案是：４２。")
    '答案是 42'
    """
    text = unicodedata.normalize("NFKC", text).lower()
    # Punctuation and symbols of every script (。，？ included) become spaces.
    text = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text)
    return " ".join(w for w in text.split() if w not in _ARTICLES)


def tokens(text: str) -> list[str]:
    """Normalised tokens: words, and single CJK characters."""
    return _TOKEN.findall(normalize(text))


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalised texts are equal.

    >>> exact_match("Paris.", "paris"), exact_match("It is Paris", "Paris")
    (1.0, 0.0)
    """
    return float(" ".join(tokens(prediction)) == " ".join(tokens(reference)))


def contains(prediction: str, reference: str) -> float:
    """1.0 when the normalised reference occurs in the normalised prediction, as whole tokens.

    >>> contains("The capital is Paris.", "paris"), contains("Parisian food", "Paris")
    (1.0, 0.0)
    """
    ref = tokens(reference)
    if not ref:
        return 0.0
    pred = tokens(prediction)
    n = len(ref)
    return float(any(pred[i : i + n] == ref for i in range(len(pred) - n + 1)))


def _f(overlap: int, n_pred: int, n_ref: int) -> float:
    if overlap == 0 or n_pred == 0 or n_ref == 0:
        return 0.0
    p, r = overlap / n_pred, overlap / n_ref
    return 2 * p * r / (p + r)


def token_f1(prediction: str, reference: str) -> float:
    """F1 of the bag-of-tokens overlap (SQuAD's F1).

    >>> token_f1("blue whale", "the blue whale")
    1.0
    """
    pred, ref = tokens(prediction), tokens(reference)
    overlap = sum((Counter(pred) & Counter(ref)).values())
    return _f(overlap, len(pred), len(ref))


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (O(len(a)·len(b)) time, O(len(b)) memory).

    >>> lcs_length(list("ABCBDAB"), list("BDCABA"))
    4
    """
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1: LCS-based precision and recall over normalised tokens.

    >>> round(rouge_l("the cat was found under the bed", "the cat was under the bed"), 4)  # P=4/5, R=4/4
    0.8889
    """
    pred, ref = tokens(prediction), tokens(reference)
    return _f(lcs_length(pred, ref), len(pred), len(ref))


def score(prediction: str, reference: str) -> dict[str, float]:
    """Every score for one answer, keyed as in :data:`SCORE_NAMES`."""
    return {
        "exact_match": exact_match(prediction, reference),
        "contains": contains(prediction, reference),
        "f1": token_f1(prediction, reference),
        "rouge_l": rouge_l(prediction, reference),
    }


def mean_scores(rows: list[dict[str, float]]) -> dict[str, float]:
    """Average of :func:`score` dicts, plus ``n`` (how many answers were scored).

    >>> mean_scores([{"exact_match": 1.0, "contains": 1.0, "f1": 1.0, "rouge_l": 1.0},
    ...              {"exact_match": 0.0, "contains": 1.0, "f1": 0.5, "rouge_l": 0.0}])
    {'exact_match': 0.5, 'contains': 1.0, 'f1': 0.75, 'rouge_l': 0.5, 'n': 2}
    """
    out: dict = {k: (sum(r[k] for r in rows) / len(rows) if rows else None) for k in SCORE_NAMES}
    out["n"] = len(rows)
    return out
