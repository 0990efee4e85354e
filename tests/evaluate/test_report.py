"""eval.json / eval.md / eval.html from a hand-made result: stable keys, escaping, the metric table."""

from __future__ import annotations

import json

from sftune.evaluate.compare import EvalResult
from sftune.evaluate.report import metric_rows, summary, to_html, to_markdown, write_reports

NASTY = '<script>alert("x")</script> a|b\nnext line & more'


def result(compare: bool = True) -> EvalResult:
    ans_b = {"text": "Paris!", "completion_tokens": 3, "finish_reason": "stop", "scores": {"exact_match": 1.0, "contains": 1.0, "f1": 1.0, "rouge_l": 1.0}}
    ans_f = {"text": NASTY, "completion_tokens": 12, "finish_reason": "length", "scores": {"exact_match": 0.0, "contains": 0.0, "f1": 0.0, "rouge_l": 0.0}}
    return EvalResult(
        model="runs/x", base="default" if compare else None, adapter=True,
        settings={"max_new_tokens": 32, "greedy": True, "batch_size": 8, "mask": "assistant", "max_length": 2048, "forgetting_threshold": 0.1},
        heldout={"data": ["h.jsonl"], "report": {}, "fine_tuned": {"loss": 1.5, "perplexity": 4.4817, "tokens": 120, "rows": 4},
                 "base": {"loss": 2.0, "perplexity": 7.3891, "tokens": 120, "rows": 4} if compare else None},
        forgetting={"data": "g.jsonl", "base": {"loss": 2.0, "perplexity": 20.0, "tokens": 9, "rows": 1} if compare else None,
                    "fine_tuned": {"loss": 2.3, "perplexity": 25.0, "tokens": 9, "rows": 1},
                    "relative_change": 0.25 if compare else None, "threshold": 0.1,
                    "warning": "perplexity on general text rose +25.0%" if compare else None},
        questions=[{"id": 0, "group": None, "source": "q.jsonl:1", "question": "Capital | of France?", "prompt": [], "reference": "Paris",
                    "base": ans_b if compare else None, "fine_tuned": ans_f}],
        scores={"fine_tuned": {"exact_match": 0.0, "contains": 0.0, "f1": 0.0, "rouge_l": 0.0, "n": 1},
                "base": {"exact_match": 1.0, "contains": 1.0, "f1": 1.0, "rouge_l": 1.0, "n": 1} if compare else None},
        seconds=1.25, created="2026-11-23T09:00:00+00:00",
    )


def test_metric_rows():
    rows = {m: (b, f, c) for m, b, f, c in metric_rows(result().to_dict())}
    assert rows["held-out loss (trained tokens)"] == ("2.0000", "1.5000", "-25.0%")
    assert rows["general-text perplexity"] == ("20.00", "25.00", "+25.0%")
    assert rows["exact_match (mean of 1)"] == ("1.000", "0.000", "")
    alone = {m: (b, f, c) for m, b, f, c in metric_rows(result(compare=False).to_dict())}
    assert alone["held-out loss (trained tokens)"] == ("–", "1.5000", "–")


def test_markdown_table_survives_pipes_and_newlines():
    md = to_markdown(result().to_dict())
    row = next(line for line in md.splitlines() if line.startswith("| 1 |"))
    assert row == ("| 1 | Capital \\| of France? | Paris | Paris!<br>*F1 1.00, ROUGE-L 1.00* | "
                   '<script>alert("x")</script> a\\|b<br>next line & more<br>*F1 0.00, ROUGE-L 0.00* |')
    assert "> **Warning:** perplexity on general text rose +25.0%" in md
    assert "| # | question | reference | base | fine-tuned |" in md
    assert "| # | question | reference | fine-tuned |" in to_markdown(result(compare=False).to_dict())


def test_html_is_escaped_and_self_contained():
    page = to_html(result().to_dict())
    assert "<script>" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "next line &amp; more" in page
    assert "http://" not in page and "https://" not in page and "<link" not in page  # nothing fetched
    assert page.count("<tr>") == 2 + 1 + len(metric_rows(result().to_dict()))  # 2 header rows, 1 answer, the metrics


def test_write_reports_and_summary(tmp_path):
    paths = write_reports(result(), tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == ["eval.html", "eval.json", "eval.md"]
    d = json.loads(paths["eval.json"].read_text(encoding="utf-8"))
    assert d == json.loads(json.dumps(result().to_dict()))
    text = summary(d, paths)
    assert "WARNING: perplexity on general text rose" in text and "fine-tuned: <script>" in text
