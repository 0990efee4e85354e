"""The Data page: pick files and data options, then see the rows, what was kept or dropped and why,
and which tokens will be trained (the same mask ``sftune inspect`` shows)."""

from __future__ import annotations

import threading

from .access import RESOURCES, PathGuard
from .form import field_specs, make_widget

#: Schema fields this page sets (the rest of the data options are on the Train page).
DATA_FIELDS = ["format", "template", "mask", "max_length", "system_prompt"]
DEMO_FILE = RESOURCES / "identity.jsonl"
PREVIEW_ROWS = 20

_TOKENIZERS: dict = {}
_TOK_LOCK = threading.Lock()


def tokenizer_for(model: str, cache_dir=None):
    from ..model.loading import load_tokenizer

    with _TOK_LOCK:
        if model not in _TOKENIZERS:
            _TOKENIZERS[model] = load_tokenizer(model, cache_dir=cache_dir)
        return _TOKENIZERS[model]


def data_sources(guard: PathGuard, typed: str, uploaded) -> list[str]:
    """Typed paths (one per line, checked against the workdir) plus uploaded files."""
    paths = [guard.model_or_path(ln, what="data file") for ln in (typed or "").splitlines() if ln.strip()]
    for f in uploaded or []:
        paths.append(f if isinstance(f, str) else getattr(f, "name", str(f)))
    if not paths:
        raise ValueError("no data: type a file path (one per line), upload a file, or press 'Load demo data'")
    return paths


def preview(guard: PathGuard, model: str, typed: str, uploaded, options: dict, index: int = 0):
    """(stats, report, preview rows, mask pieces, chosen index) for the page; raises with the fix."""
    from ..data.inspect import format_stats, stats, token_pieces
    from ..data.prepare import prepare
    from ..data.readers import read_conversations
    from ..data.report import DataReport
    from ..data.tokenize import IGNORE_INDEX

    from .form import validate

    cfg = validate({"model": guard.model_or_path(model), "data": data_sources(guard, typed, uploaded), **options})
    tok = tokenizer_for(cfg.model, cfg.cache_dir)
    prep = prepare(cfg, tok, progress=False)
    rows = []
    for src in cfg.data:
        for conv in read_conversations(src, DataReport(), default_format=cfg.source_format(src), system_prompt=cfg.system_prompt):
            rows.append([str(conv.source or ""), conv.kind, "\n".join(f"{m.role}: {m.content}" for m in conv.messages)])
            if len(rows) >= PREVIEW_ROWS:
                break
    report = "```\n" + prep.report.summary() + "\n```"
    if len(prep.dataset) == 0:
        return "no rows were kept: see the report for why", report, rows, [], 0
    index = max(0, min(int(index or 0), len(prep.dataset) - 1))
    row = prep.dataset[index]
    pieces = token_pieces(tok, row["input_ids"])
    marked = [(p, "trained" if lab != IGNORE_INDEX else None) for p, lab in zip(pieces, row["labels"])]
    info = f"sample {index} of {len(prep.dataset)} · template: {'given' if cfg.template else 'the tokenizer’s own'}\n\n"
    return info + "```\n" + format_stats(stats(prep.dataset, prep.report)) + "\n```", report, rows, marked, index


def build(guard: PathGuard):
    """Lay out the page; returns the components other pages connect to."""
    import gradio as gr

    specs = {s.name: s for s in field_specs()}
    gr.Markdown("Choose data and options, then **Preview**: rows as read, the kept/dropped report, and the mask "
                "(green = trained tokens, the rest has label -100).")
    with gr.Row():
        with gr.Column(scale=2):
            model = gr.Textbox(value="default", label="model (its tokenizer and chat template)", info=specs["model"].help,
                               elem_id="data-model")
            paths = gr.Textbox(label="data files", lines=2, placeholder="one path per line (relative to the workdir)",
                               info="JSON, JSONL, Parquet, CSV, or a save_to_disk folder", elem_id="data-paths")
            with gr.Row():
                demo = gr.Button("Load demo data", elem_id="data-demo")
                uploads = gr.File(label="or upload", file_count="multiple", height=90)
        with gr.Column(scale=2):
            widgets = [make_widget(specs[n]) for n in DATA_FIELDS]
    with gr.Row():
        index = gr.Number(value=0, precision=0, label="sample to show", minimum=0)
        run = gr.Button("Preview", variant="primary", elem_id="data-preview")
        use = gr.Button("Use this data on the Train page", elem_id="data-use")
    error = gr.Markdown(elem_id="data-error")
    with gr.Row():
        summary = gr.Markdown(elem_id="data-stats")
        report = gr.Markdown(elem_id="data-report")
    mask = gr.HighlightedText(label="mask preview: trained tokens in green", color_map={"trained": "#7ccf7c"},
                              combine_adjacent=False, show_legend=True, elem_id="data-mask")
    rows = gr.Dataframe(headers=["source", "kind", "messages"], label="rows as read (first 20)", wrap=True,
                        elem_id="data-rows")

    def on_preview(model_v, paths_v, uploads_v, index_v, *values):
        from .form import from_widget_value

        options = {n: from_widget_value(specs[n], v) for n, v in zip(DATA_FIELDS, values)}
        options = {k: v for k, v in options.items() if v is not None}
        try:
            s, r, rws, marked, idx = preview(guard, model_v, paths_v, uploads_v, options, index_v)
        except Exception as e:  # shown in the page with what to do; the app keeps running
            return f"**Could not prepare the data:** {e}", gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return "", s, r, rws, marked, idx

    demo.click(lambda: str(DEMO_FILE), outputs=paths)
    run.click(on_preview, inputs=[model, paths, uploads, index, *widgets], outputs=[error, summary, report, rows, mask, index])
    return {"model": model, "paths": paths, "uploads": uploads, "use": use, "fields": dict(zip(DATA_FIELDS, widgets))}
