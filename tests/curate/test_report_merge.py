"""CurateReport.merge: the reader's drops count as read and dropped, examples capped, notes kept."""

from __future__ import annotations

from sftune.curate.io import CurateReport
from sftune.data.report import EXAMPLES_PER_REASON, DataReport


def test_merge_folds_the_reading_report_in():
    step = CurateReport(command="filter")
    step.seen(4)
    step.keep(3)
    step.drop("empty_answer", "a.jsonl:2")
    for i in range(EXAMPLES_PER_REASON - 1):
        step.drop("bad_role", f"a.jsonl:{10 + i}")
    reading = DataReport()
    for i in range(3):
        reading.drop("bad_role", f"b.jsonl:{i + 1}")
    reading.drop("no_answer", "b.jsonl:9")
    reading.notes.append("column 'output' read as the answer")

    assert step.merge(reading) is step
    d = step.to_dict()
    assert d["rows_in"] == 4 + 4 and d["kept"] == 3
    assert d["dropped_by_reason"] == {"empty_answer": 1, "bad_role": EXAMPLES_PER_REASON - 1 + 3, "no_answer": 1}
    # the step's own examples come first, and no reason keeps more than EXAMPLES_PER_REASON
    assert d["examples"]["bad_role"] == [f"a.jsonl:{10 + i}" for i in range(EXAMPLES_PER_REASON - 1)] + ["b.jsonl:1"]
    assert d["examples"]["no_answer"] == ["b.jsonl:9"]
    assert d["notes"] == ["column 'output' read as the answer"] and d["command"] == "filter"
