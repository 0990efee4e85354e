"""``sftune ui``: a local web app over the library, with one page per step (Data, Train, Chat,
Evaluate, Export).

>>> # from sftune.ui.app import launch
>>> # launch(port=7860, workdir="~/sft")    # http://127.0.0.1:7860, paths confined to ~/sft

Everything heavy runs elsewhere: training, evaluation and merging as separate processes (so the
page never blocks and a run outlives a page reload); previews and chat in worker threads.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import chat_page, data_page, tools_page, train_page
from .access import PathGuard, check_bind, parse_auth
from .form import to_widget_value, field_specs

TITLE = "sftune"


def build_app(workdir: str | os.PathLike | None = None):
    """The gradio Blocks app; ``workdir`` (if given) confines every typed path and holds ``runs/``."""
    try:
        import gradio as gr
    except ImportError:
        raise ImportError("the web app needs gradio: pip install 'sftune[ui]' (or pip install 'gradio>=5')") from None

    guard = PathGuard(workdir)
    runs_root = guard.base / "runs"
    with gr.Blocks(title=TITLE) as app:
        where = f"workdir `{guard.workdir}` (paths outside it are refused)" if guard.workdir else f"folder `{guard.base}`"
        gr.Markdown(f"## sftune: fine-tune a language model\nWorking in {where}; runs go to `{runs_root}`.")
        with gr.Tabs():
            with gr.Tab("Data", id="data"):
                data = data_page.build(guard)
            with gr.Tab("Train", id="train"):
                train = train_page.build(guard, runs_root)
            with gr.Tab("Chat", id="chat"):
                chat = chat_page.build(guard, runs_root)
            with gr.Tab("Evaluate", id="evaluate"):
                tools_page.build_eval(guard, runs_root)
            with gr.Tab("Export", id="export"):
                tools_page.build_export(guard, runs_root)
        _connect_data_to_train(data, train)
        # A reloaded page (or a restarted app) finds its runs again from their folders and shows the newest.
        app.load(lambda: (train["refresh"](newest=True), chat["refresh_choices"]()), outputs=[train["runs"], chat["model"]])
    return app


def _connect_data_to_train(data: dict, train: dict) -> None:
    """'Use this data on the Train page' copies the model, files and data options into the form."""
    specs = {s.name: s for s in field_specs()}
    widgets = train["widgets"]
    names = ["model", *data["fields"]]
    sources = [data["model"], *data["fields"].values()]

    def copy(paths, uploads, *values):
        files = [ln.strip() for ln in (paths or "").splitlines() if ln.strip()]
        files += [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in uploads or []]
        return [to_widget_value(specs["data"], files), *values]

    data["use"].click(copy, inputs=[data["paths"], data["uploads"], *sources],
                      outputs=[widgets["data"], *(widgets[n] for n in names)])


def launch(host: str = "127.0.0.1", port: int = 7860, workdir: str | os.PathLike | None = None,
           auth: str | None = None, share: bool = False, block: bool = True):
    """Serve the app. A non-loopback ``host`` needs ``auth='USER:PASSWORD'``; no public link unless ``share``.

    Returns the app; with ``block=False`` it returns once the server is up (tests, notebooks).
    """
    check_bind(host, auth)
    if workdir is not None and not Path(workdir).is_dir():
        raise NotADirectoryError(f"--workdir {workdir}: no such folder; create it first")
    app = build_app(workdir)
    app.queue(default_concurrency_limit=4)
    app.launch(server_name=host, server_port=port, auth=parse_auth(auth), share=share, prevent_thread_lock=not block,
               inbrowser=False, footer_links=[], quiet=not block)
    return app
