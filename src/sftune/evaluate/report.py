"""Write what ``sftune eval`` measured: ``eval.json`` (for scripts), ``eval.md`` and ``eval.html``
(for people: the answers side by side, then the numbers).

``eval.json`` is :meth:`EvalResult.to_dict` unchanged; its top-level keys are stable
(``sftune_version, created, model, base, adapter, settings, heldout, forgetting, questions,
scores, notes, seconds``) so runs can be compared by scripts. The HTML page is one
self-contained file (inline CSS, no scripts, nothing fetched) with every model text escaped.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from .scores import SCORE_NAMES

FILES = ("eval.json", "eval.md", "eval.html")


def _fmt(x, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _pct(x) -> str:
    return "–" if x is None else f"{x:+.1%}"


def metric_rows(d: dict) -> list[tuple[str, str, str, str]]:
    """(metric, base, fine-tuned, change) rows for the summary table."""
    rows = []
    h = d.get("heldout")
    if h:
        b, f = h.get("base") or {}, h["fine_tuned"]
        rows.append(("held-out loss (trained tokens)", _fmt(b.get("loss")), _fmt(f["loss"]), _pct((f["loss"] - b["loss"]) / b["loss"]) if b else "–"))
        rows.append(("held-out perplexity", _fmt(b.get("perplexity"), 2), _fmt(f["perplexity"], 2), _pct((f["perplexity"] - b["perplexity"]) / b["perplexity"]) if b else "–"))
        rows.append(("held-out trained tokens", _fmt(f["tokens"]), _fmt(f["tokens"]), ""))
    g = d.get("forgetting")
    if g:
        b, f = g.get("base") or {}, g["fine_tuned"]
        rows.append(("general-text perplexity", _fmt(b.get("perplexity"), 2), _fmt(f["perplexity"], 2), _pct(g.get("relative_change"))))
    s = d.get("scores")
    if s:
        b, f = s.get("base") or {}, s["fine_tuned"]
        for k in SCORE_NAMES:
            rows.append((f"{k} (mean of {f['n']})", _fmt(b.get(k), 3), _fmt(f[k], 3), ""))
    return rows


def _md_cell(text) -> str:
    """Markdown table cell: pipes escaped, newlines as <br>."""
    if text is None:
        return "–"
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def to_markdown(d: dict) -> str:
    compare = d.get("base") is not None
    lines = [f"# sftune eval: `{d['model']}`", ""]
    lines.append(f"- fine-tuned: `{d['model']}`" + (" (adapter)" if d.get("adapter") else ""))
    lines.append(f"- base: `{d['base']}`" if compare else "- base: not compared")
    st = d["settings"]
    lines.append(f"- answers: greedy, at most {st['max_new_tokens']} new tokens; mask `{st['mask']}`, max_length {st['max_length']}")
    lines.append(f"- created {d['created']} in {d['seconds']:.1f} s by sftune {d['sftune_version']}")
    g = d.get("forgetting")
    if g and g.get("warning"):
        lines += ["", f"> **Warning:** {g['warning']}"]
    for n in d.get("notes", []):
        lines += ["", f"> Note: {n}"]
    rows = metric_rows(d)
    if rows:
        lines += ["", "## Metrics", "", "| metric | base | fine-tuned | change |", "|---|---:|---:|---:|"]
        lines += [f"| {m} | {b} | {f} | {c} |" for m, b, f, c in rows]
    qs = d.get("questions") or []
    if qs:
        has_ref = any(q.get("reference") is not None for q in qs)
        head = ["#", "question"] + (["reference"] if has_ref else []) + (["base"] if compare else []) + ["fine-tuned"]
        lines += ["", "## Answers side by side", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for q in qs:
            cells = [str(q["id"] + 1), _md_cell(q["question"])]
            if has_ref:
                cells.append(_md_cell(q.get("reference")))
            if compare:
                cells.append(_md_cell(q["base"]["text"]) + _md_score(q["base"]))
            cells.append(_md_cell(q["fine_tuned"]["text"]) + _md_score(q["fine_tuned"]))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _md_score(ans: dict) -> str:
    s = ans.get("scores")
    return f"<br>*F1 {s['f1']:.2f}, ROUGE-L {s['rouge_l']:.2f}*" if s else ""


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;color:#222}
table{border-collapse:collapse;width:100%;margin:1rem 0}
th,td{border:1px solid #ccc;padding:.4rem .6rem;vertical-align:top;text-align:left}
th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.text{white-space:pre-wrap}
.warn{background:#fff3cd;border:1px solid #e0c060;padding:.6rem;border-radius:4px}
.note{color:#555}
.score{color:#666;font-size:.85em;display:block;margin-top:.3rem}
code{background:#f3f3f3;padding:0 .2rem}
"""


def to_html(d: dict) -> str:
    e = html.escape
    compare = d.get("base") is not None
    st = d["settings"]
    out = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>sftune eval: {e(d['model'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>sftune eval: <code>{e(d['model'])}</code></h1><ul>",
        f"<li>fine-tuned: <code>{e(d['model'])}</code>{' (adapter)' if d.get('adapter') else ''}</li>",
        f"<li>base: <code>{e(d['base'])}</code></li>" if compare else "<li>base: not compared</li>",
        f"<li>answers: greedy, at most {st['max_new_tokens']} new tokens; mask <code>{e(st['mask'])}</code>, max_length {st['max_length']}</li>",
        f"<li>created {e(d['created'])} in {d['seconds']:.1f} s by sftune {e(d['sftune_version'])}</li></ul>",
    ]
    g = d.get("forgetting")
    if g and g.get("warning"):
        out.append(f'<p class="warn"><strong>Warning:</strong> {e(g["warning"])}</p>')
    out += [f'<p class="note">Note: {e(n)}</p>' for n in d.get("notes", [])]
    rows = metric_rows(d)
    if rows:
        out.append("<h2>Metrics</h2><table><tr><th>metric</th><th>base</th><th>fine-tuned</th><th>change</th></tr>")
        out += [f'<tr><td>{e(m)}</td><td class="num">{e(b)}</td><td class="num">{e(f)}</td><td class="num">{e(c)}</td></tr>' for m, b, f, c in rows]
        out.append("</table>")
    qs = d.get("questions") or []
    if qs:
        has_ref = any(q.get("reference") is not None for q in qs)
        head = ["#", "question"] + (["reference"] if has_ref else []) + (["base"] if compare else []) + ["fine-tuned"]
        out.append("<h2>Answers side by side</h2><table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>")
        for q in qs:
            cells = [f'<td class="num">{q["id"] + 1}</td>', f'<td class="text">{e(q["question"])}</td>']
            if has_ref:
                cells.append(f'<td class="text">{e(q["reference"] or "")}</td>')
            sides = (["base"] if compare else []) + ["fine_tuned"]
            for side in sides:
                ans = q[side]
                s = ans.get("scores")
                extra = f'<span class="score">F1 {s["f1"]:.2f} · ROUGE-L {s["rouge_l"]:.2f} · EM {s["exact_match"]:.0f}</span>' if s else ""
                cells.append(f'<td class="text">{e(ans["text"])}{extra}</td>')
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_reports(result, output_dir: str | Path) -> dict[str, Path]:
    """Write eval.json, eval.md and eval.html into ``output_dir``; returns their paths by name."""
    d = result.to_dict() if hasattr(result, "to_dict") else result
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in FILES}
    paths["eval.json"].write_text(json.dumps(d, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["eval.md"].write_text(to_markdown(d), encoding="utf-8")
    paths["eval.html"].write_text(to_html(d), encoding="utf-8")
    return paths


def summary(d: dict, paths: dict[str, Path] | None = None) -> str:
    """A short terminal summary: the metric table, the first answers, where the reports are."""
    lines = ["", "=" * 72, f"sftune eval: {d['model']}" + (f"  vs base {d['base']}" if d.get("base") else "")]
    rows = metric_rows(d)
    if rows:
        w = max(len(r[0]) for r in rows)
        lines.append(f"  {'metric':<{w}}  {'base':>10}  {'fine-tuned':>10}  {'change':>8}")
        lines += [f"  {m:<{w}}  {b:>10}  {f:>10}  {c:>8}" for m, b, f, c in rows]
    g = d.get("forgetting")
    if g and g.get("warning"):
        lines.append(f"  WARNING: {g['warning']}")
    for q in (d.get("questions") or [])[:8]:
        lines.append(f"  Q: {q['question']}")
        if q.get("base"):
            lines.append(f"     base:       {_short(q['base']['text'])}")
        lines.append(f"     fine-tuned: {_short(q['fine_tuned']['text'])}")
    for n in d.get("notes", []):
        lines.append(f"  note: {n}")
    if paths:
        lines.append("  reports: " + ", ".join(str(p) for p in paths.values()))
    lines.append("=" * 72)
    return "\n".join(lines)


def _short(text: str, n: int = 100) -> str:
    t = " ".join(text.split())
    return t if len(t) <= n else t[: n - 1] + "…"
