"""Decontamination on hand-made train/eval sets: which rows go, which eval rows were hit."""

from __future__ import annotations

from curate_helpers import chat

from sftune.curate.decontaminate import DecontamOptions, decontaminate
from sftune.curate.io import CurateReport

EVAL = [
    chat("Which river flows through the capital city of Hungary and also through the city of Vienna in Austria?",
         "The Danube.", line=1),
    chat("Name a prime number.",
         "Two is the only even prime number, because every other even number can be divided by two without remainder.", line=2),
    chat("What is the boiling point of water at sea level?", "100 degrees Celsius.", line=3),  # 10-word prompt: matched whole
    chat("长江流经哪些省份？", "长江发源于青藏高原的唐古拉山脉各拉丹冬峰西南侧。", line=4),
    chat("Hi", "Hello", line=5),  # too short to match anything
]

TRAIN = [
    (chat("Tell me about rivers in Europe.", "Europe has many long rivers.", line=1), False),
    # prompt shares 13+ words with eval 1 (case and punctuation differ)
    (chat("QUIZ: which river flows through the capital city of Hungary, and also through the city of Vienna?", "The Danube.", line=2), True),
    # answer shares a 13-word span with eval 2's answer
    (chat("Is 2 prime?", "Yes. Two is the only even prime number, because every other even number can be divided.", line=3), True),
    # shares only 12 words with eval 2's answer: fine
    (chat("Is 4 prime?", "No: two is the only even prime number, because every other even number is not, so 4 is not.", line=4), False),
    # eval 3's whole 10-word prompt appears inside
    (chat("Quick one. What is the boiling point of water at sea level? Thanks", "100 C.", line=5), True),
    # 13 CJK characters shared with eval 4's answer
    (chat("介绍长江", "长江发源于青藏高原的唐古拉山脉，全长六千多公里。", line=6), True),
    # 12 CJK characters shared: fine
    (chat("介绍长江", "据说长江发源于青藏高原的唐古，是中国第一长河。", line=7), False),
    (chat("Hi", "Hello", line=8), False),  # same as the short eval row, but that is too short to count
    # hits eval 1 through the answer too (both fields): still one dropped row
    (chat("Which river flows through the capital city of Hungary and also through the city of Vienna in Austria?",
          "Which river flows through the capital city of Hungary and also through the city of Vienna in Austria? The Danube.", line=9), True),
]


def run(opts=None):
    report = CurateReport(command="decontaminate")
    kept = decontaminate([t for t, _ in TRAIN], EVAL, report, opts)
    return kept, report


def test_contaminated_rows_exact_counts():
    kept, report = run()
    assert kept == [t for t, bad in TRAIN if not bad]
    assert dict(report.dropped) == {"contaminated": sum(bad for _, bad in TRAIN)}
    assert report.rows_in == len(TRAIN)


def test_report_lists_eval_rows_hit_with_counts():
    _, report = run()
    d = report.details
    assert d["eval_rows"] == 5 and d["eval_rows_hit"] == 4
    hits = {h["eval_row"]: h["train_rows"] for h in d["hits"]}
    assert hits == {"test.jsonl:1": 2, "test.jsonl:2": 1, "test.jsonl:3": 1, "test.jsonl:4": 1}
    assert d["hits"][0]["eval_row"] == "test.jsonl:1"  # most hit first
    assert d["hits"][0]["train_examples"] == ["test.jsonl:2", "test.jsonl:9"]
    ex = report.examples["contaminated"]
    assert ex[0].startswith("test.jsonl:2 (prompt shares 'which river flows") and "eval test.jsonl:1" in ex[0]
    assert ex[1].startswith("test.jsonl:3 (answer shares")


def test_fields_and_ngram_options():
    _, report = run(DecontamOptions(fields="prompt"))
    assert report.dropped["contaminated"] == 3  # rows 2, 5 and 9: by their prompts
    _, report = run(DecontamOptions(ngram=8, min_short=20))
    # 8-grams: row 4 now hits eval 2 (shares 12 words), row 7 hits eval 4 (12 chars); eval 3 is matched by 8-grams too.
    assert report.dropped["contaminated"] == 7
