"""Reference-based scores, with values computed by hand."""

from __future__ import annotations

import pytest

from sftune.evaluate.scores import contains, exact_match, lcs_length, mean_scores, normalize, rouge_l, score, token_f1, tokens


def test_normalize_and_tokens():
    assert normalize("The  QUICK, brown fox!") == "quick brown fox"
    assert normalize("Ｈｅｌｌｏ，ＷＯＲＬＤ。") == "hello world"  # full-width forms (NFKC) and CJK punctuation
    assert tokens("我是 Kestrel，来自 Northwind Labs。") == ["我", "是", "kestrel", "来", "自", "northwind", "labs"]
    assert tokens("こんにちは 한국어 ok") == ["こ", "ん", "に", "ち", "は", "한", "국", "어", "ok"]
    assert tokens("3.14 and 2,000") == ["3", "14", "and", "2", "000"]
    assert tokens("") == [] and tokens("...!!") == []


def test_exact_match():
    assert exact_match("Paris.", "paris") == 1.0
    assert exact_match("The answer: 42", "answer 42") == 1.0
    assert exact_match("42 is it", "42") == 0.0
    assert exact_match("我是Kestrel。", "我是 Kestrel") == 1.0  # CJK split per character, so spacing does not matter
    assert exact_match("", "") == 1.0


def test_contains():
    assert contains("I think the capital is Paris, France.", "Paris") == 1.0
    assert contains("Parisian", "Paris") == 0.0  # whole tokens only
    assert contains("我叫Kestrel，由北风实验室开发", "北风实验室") == 1.0
    assert contains("北风", "北风实验室") == 0.0
    assert contains("anything", "") == 0.0


def test_token_f1_by_hand():
    # pred [cat, sat, on, mat] vs ref [cat, on, mat]: overlap 3, P=3/4, R=1, F1=6/7
    assert token_f1("the cat sat on the mat", "a cat on a mat") == pytest.approx(6 / 7)
    # counts are clipped: pred [yes, yes, yes] vs ref [yes]: overlap 1, P=1/3, R=1 -> 0.5
    assert token_f1("yes yes yes", "yes") == pytest.approx(0.5)
    # Chinese: pred 我/是/小/明 vs ref 我/叫/小/明: overlap 3, P=R=3/4
    assert token_f1("我是小明", "我叫小明") == pytest.approx(0.75)
    assert token_f1("", "x") == 0.0 and token_f1("x", "") == 0.0


def test_rouge_l_by_hand():
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4
    assert lcs_length([], ["a"]) == 0
    # pred [cat, was, found, under, bed], ref [cat, was, under, bed]: LCS 4, P=4/5, R=1 -> 8/9
    assert rouge_l("the cat was found under the bed", "the cat was under the bed") == pytest.approx(8 / 9)
    # order matters for ROUGE-L but not for F1: [y, x] vs [x, y] -> LCS 1, P=R=1/2
    assert rouge_l("y x", "x y") == pytest.approx(0.5)
    assert token_f1("y x", "x y") == 1.0
    # Chinese, per character: pred 今天天气很好 vs ref 今天天气不错: LCS 今天天气 = 4, P=R=4/6
    assert rouge_l("今天天气很好。", "今天天气不错") == pytest.approx(4 / 6)


def test_score_and_mean():
    s = score("Paris", "paris")
    assert s == {"exact_match": 1.0, "contains": 1.0, "f1": 1.0, "rouge_l": 1.0}
    m = mean_scores([s, score("London", "Paris")])
    assert m == {"exact_match": 0.5, "contains": 0.5, "f1": 0.5, "rouge_l": 0.5, "n": 2}
    assert mean_scores([]) == {"exact_match": None, "contains": None, "f1": None, "rouge_l": None, "n": 0}
