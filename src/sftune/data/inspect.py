"""See what will be trained: a sample with trained tokens highlighted, a PNG of the mask, statistics.

Trained tokens have a green background. In agent and reasoning data, tool calls, tool results and
reasoning are also told apart by colour (blue, yellow and magenta text), found from the markup
the common chat templates write (:data:`MARKUP`).

>>> print(highlight(["Hi", "!", "<|im_end|>"], [False, True, True], color=False))
Hi[[!<|im_end|>]]
>>> token_kinds(["<think>", "hm", "</think>", "ok", "<tool_call>", "{}", "</tool_call>"])
['reasoning', 'reasoning', 'reasoning', None, 'tool call', 'tool call', 'tool call']
"""

from __future__ import annotations

import warnings

from pathlib import Path

import numpy as np

from .tokenize import IGNORE_INDEX

GREEN, RESET = "\x1b[42;30m", "\x1b[0m"

#: (kind, opening markup, closing markup) of the tool-call, tool-result and reasoning blocks the
#: common templates write (Qwen/Hermes, Mistral, Llama 3.x, DeepSeek-R1 style).
MARKUP = [
    ("reasoning", "<think>", "</think>"),
    ("tool call", "<tool_call>", "</tool_call>"),
    ("tool call", "[TOOL_CALLS]", "</s>"),
    ("tool call", "<|python_tag|>", "<|eom_id|>"),
    ("tool result", "<tool_response>", "</tool_response>"),
    ("tool result", "[TOOL_RESULTS]", "[/TOOL_RESULTS]"),
    ("tool result", "<|start_header_id|>ipython<|end_header_id|>", "<|eot_id|>"),
]
#: Terminal text colour and PNG text colour of each kind.
KIND_COLORS = {"tool call": ("\x1b[1;34m", "#1f4fd1"), "tool result": ("\x1b[1;33m", "#a06800"), "reasoning": ("\x1b[1;35m", "#a0209a")}


def token_kinds(pieces: list[str]) -> list[str | None]:
    """Per token: ``"tool call"``, ``"tool result"``, ``"reasoning"`` (inside such a block,
    markup included) or ``None``. A block left open runs to the end of the sample."""
    text = "".join(pieces)
    kinds_at = [None] * len(text)
    for kind, open_, close in MARKUP:
        start = text.find(open_)
        while start != -1:
            end = text.find(close, start + len(open_))
            end = len(text) if end == -1 else end + len(close)
            for i in range(start, end):
                kinds_at[i] = kinds_at[i] or kind
            start = text.find(open_, end)
    out, pos = [], 0
    for p in pieces:
        out.append(next((k for k in kinds_at[pos : pos + len(p)] if k), None) if p else None)
        pos += len(p)
    return out


def _visible(tok: str) -> str:
    return tok.replace("\n", "\\n\n").replace("\t", "\\t")


#: Monospace first; CJK fonts (where installed) as fallbacks so Chinese text is drawn, not boxed.
MASK_FONTS = ["DejaVu Sans Mono", "Noto Sans Mono CJK SC", "Noto Sans CJK SC", "WenQuanYi Zen Hei"]


def _installed_fonts() -> list[str]:
    """:data:`MASK_FONTS` that matplotlib can find (asking for a missing family logs a line per glyph)."""
    from matplotlib import font_manager

    have = {f.name for f in font_manager.fontManager.ttflist}
    return [f for f in MASK_FONTS if f in have] + ["monospace"]


def token_pieces(tokenizer, ids: list[int]) -> list[str]:
    """Each token's text as it appears in the decoded string (byte-level BPE pieces decoded).

    A character split over several byte-level tokens (CJK, emoji) cannot be shown by any one of
    them: the run of tokens is decoded together, its text given to the run's last token and ``""``
    to the others, so the pieces still align with the ids and join to the decoded text.
    """
    def dec(run: list[int]) -> str:
        return tokenizer.decode(run, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    pieces: list[str] = []
    run: list[int] = []
    for i in ids:
        run.append(i)
        text = dec(run)
        if text.endswith("\ufffd") and len(run) < 4:
            continue  # an incomplete UTF-8 sequence: wait for the token that completes it
        pieces += [""] * (len(run) - 1) + [text]
        run = []
    if run:
        pieces += [""] * (len(run) - 1) + [dec(run)]
    return pieces


def highlight(pieces: list[str], trained: list[bool], color: bool, kinds: list[str | None] | None = None) -> str:
    """Mark trained tokens: green background in a terminal (tool calls, tool results and
    reasoning in their :data:`KIND_COLORS`), ``[[...]]`` around trained runs otherwise."""
    out, inside = [], False
    kinds = kinds or [None] * len(pieces)
    for p, t, kind in zip(pieces, trained, kinds):
        if color:
            fg = KIND_COLORS[kind][0] if kind else ""
            out.append(f"{GREEN}{fg}{_visible(p)}{RESET}" if t else (f"{fg}{_visible(p)}{RESET}" if fg else _visible(p)))
            continue
        if t and not inside:
            out.append("[[")
        if not t and inside:
            out.append("]]")
        inside = t
        out.append(p)
    if inside and not color:
        out.append("]]")
    return "".join(out)


def stats(dataset, report=None) -> dict:
    """Rows, token-length distribution, trained-token share, dropped rows by reason."""
    lengths = np.fromiter((len(x) for x in dataset["input_ids"]), dtype=np.int64)
    trained = np.fromiter((sum(1 for l in x if l != IGNORE_INDEX) for x in dataset["labels"]), dtype=np.int64)
    s = {
        "rows": int(len(lengths)),
        "tokens": int(lengths.sum()),
        "trained_tokens": int(trained.sum()),
        "trained_share": float(trained.sum() / max(1, lengths.sum())),
    }
    if len(lengths):
        s["length"] = {
            "min": int(lengths.min()),
            "mean": round(float(lengths.mean()), 1),
            "p50": int(np.percentile(lengths, 50)),
            "p90": int(np.percentile(lengths, 90)),
            "p99": int(np.percentile(lengths, 99)),
            "max": int(lengths.max()),
        }
    if report is not None:
        s["dropped_by_reason"] = dict(report.dropped)
        s["rows_read"] = report.rows_in
    return s


def format_stats(s: dict) -> str:
    lines = [
        f"rows: {s['rows']}   tokens: {s['tokens']}   trained tokens: {s['trained_tokens']} ({s['trained_share']:.1%})",
    ]
    if "length" in s:
        L = s["length"]
        lines.append(f"length: min {L['min']}  mean {L['mean']}  p50 {L['p50']}  p90 {L['p90']}  p99 {L['p99']}  max {L['max']}")
    if s.get("dropped_by_reason"):
        lines.append(f"rows read: {s.get('rows_read')}   dropped: " + ", ".join(f"{k}: {v}" for k, v in s["dropped_by_reason"].items()))
    elif "rows_read" in s:
        lines.append(f"rows read: {s['rows_read']}   dropped: none")
    return "\n".join(lines)


def plot_mask(
    pieces: list[str], trained: list[bool], path: str | Path, title: str = "", lengths=None, width: int = 90, kinds=None
) -> Path:
    """Draw tokens as boxes (green = trained, grey = not trained), wrapped like text; the text of
    tool calls, tool results and reasoning in their :data:`KIND_COLORS`.

    When ``lengths`` is given a second panel shows the token-length histogram of the dataset.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Lay tokens out on a character grid: each token takes len(text)+1 columns.
    rows, x, y = [], 0, 0
    kinds = kinds or [None] * len(pieces)
    for p, t, kind in zip(pieces, trained, kinds):
        text = p.replace("\n", "⏎")
        w = max(1, len(text))
        if x + w > width:
            x, y = 0, y + 1
        rows.append((x, y, w, text, t, kind))
        x += w + 1
        if "\n" in p:
            x, y = 0, y + 1
    n_lines = y + 1
    panels = 2 if lengths is not None else 1
    fig_h = 0.32 * n_lines + 1.2 + (2.6 if panels == 2 else 0)
    fig = plt.figure(figsize=(14, fig_h))
    ax = fig.add_axes([0.02, (2.8 / fig_h) if panels == 2 else 0.02, 0.96, 1 - ((2.8 / fig_h) if panels == 2 else 0.02) - 0.9 / fig_h])
    ax.set_xlim(0, width)
    ax.set_ylim(n_lines, -0.2)
    ax.axis("off")
    fonts = _installed_fonts()
    for x, y, w, text, t, kind in rows:
        ax.add_patch(plt.Rectangle((x - 0.1, y + 0.05), w + 0.2, 0.85, color="#7ccf7c" if t else "#dddddd", lw=0))
        ax.text(x, y + 0.5, text, va="center", ha="left", fontsize=8, family=fonts,
                color=KIND_COLORS[kind][1] if kind else "black", fontweight="bold" if kind else "normal")
    names = {"tool call": "blue", "tool result": "brown", "reasoning": "purple"}
    legend = "".join(f", {names[k]} text = {k}" for k in KIND_COLORS if k in kinds)
    ax.set_title((title or "green = trained (label = token), grey = masked (label = -100)") + legend, fontsize=10, loc="left")
    if panels == 2:
        ax2 = fig.add_axes([0.07, 0.35 / fig_h, 0.9, 2.0 / fig_h])
        ax2.hist(lengths, bins=40, color="#4c72b0")
        ax2.set_xlabel("tokens per sample")
        ax2.set_ylabel("samples")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # a glyph no installed font has is drawn as a box; say it once, not per glyph
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def inspect_prepared(prep, tokenizer, *, index: int = 0, png: str | Path | None = None, color: bool = False) -> str:
    """Text for ``sftune inspect``: one sample highlighted, then dataset statistics."""
    ds = prep.dataset
    if len(ds) == 0:
        return "no rows were kept.\n" + prep.report.summary()
    index = max(0, min(index, len(ds) - 1))
    row = ds[index]
    pieces = token_pieces(tokenizer, row["input_ids"])
    trained = [l != IGNORE_INDEX for l in row["labels"]]
    kinds = token_kinds(pieces)
    lines = [f"sample {index} ({row.get('source') or 'row ' + str(index)}), {len(pieces)} tokens, {sum(trained)} trained:"]
    lines.append(highlight(pieces, trained, color, kinds))
    if color and any(kinds):
        lines.append("colours: " + ", ".join(f"{KIND_COLORS[k][0]}{k}{RESET}" for k in KIND_COLORS if k in kinds))
    lines.append("")
    s = stats(ds, prep.report)
    lines.append(format_stats(s))
    lines.extend(f"note: {n}" for n in prep.report.notes)
    lines.extend(f"warning: {n} × {reason}" for reason, n in prep.report.warnings.most_common())
    if png:
        lengths = [len(x) for x in ds["input_ids"]]
        plot_mask(pieces, trained, png, title=f"sample {index}: green = trained, grey = label -100", lengths=lengths, kinds=kinds)
        lines.append(f"mask picture written to {png}")
    return "\n".join(lines)
