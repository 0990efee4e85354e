"""The Evaluate and Export pages: ``sftune eval``, ``sftune merge`` and (once it exists)
``sftune export`` run as background jobs in the run's folder; the page shows their log and result."""

from __future__ import annotations

from pathlib import Path

from . import processes, runs
from .access import PathGuard


def has_command(name: str) -> bool:
    """Whether this sftune has the CLI command ``name`` (GGUF export arrives in a later version)."""
    from ..cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return name in sub.choices


def job_view(run_dir: str | None, job: str, result: str | None = None):
    """(status line, log tail, result Markdown) of a job in ``run_dir``."""
    if not run_dir:
        return "choose a run", "", ""
    st = processes.status(run_dir, job)
    line = {"none": f"no {job} job yet", "running": f"**{job} running** (pid {st.pid})",
            "finished": f"**{job} finished**", "failed": f"**{job} failed** (exit code {st.returncode}): the log shows why",
            "stopped": f"{job} stopped", "ended": f"{job} ended; see the log"}[st.state]
    body = ""
    if result and st.state in ("finished", "ended", "none"):
        path = Path(run_dir) / result
        body = path.read_text(encoding="utf-8") if path.is_file() else ""
    return line, processes.log_tail(run_dir, job, 30), body


def start_eval(guard: PathGuard, run: str, questions: bool = True, forgetting: bool = True, max_new_tokens: int = 128) -> str:
    """Start ``sftune eval`` on a run (report in RUN/eval); returns what to show."""
    try:
        folder = guard.output_dir(run or "", what="run folder")
        args = ["eval", "--model", str(folder), "--output", str(folder / "eval"), "--max-new-tokens", str(int(max_new_tokens))]
        args += [] if questions else ["--no-questions"]
        args += [] if forgetting else ["--no-forgetting"]
        processes.start(processes.sftune_command(*args), folder, "eval", cwd=guard.base)
    except Exception as e:  # shown in the page
        return f"**Could not start the evaluation:** {e}"
    return "evaluation started"


def start_export(guard: PathGuard, run: str, which: str) -> tuple[str, bool]:
    """Start ``sftune merge`` (-> RUN/merged) or ``sftune export`` (-> RUN/export); (message, started)."""
    try:
        folder = guard.output_dir(run or "", what="run folder")
        if which == "export" and not has_command("export"):
            return ("**GGUF export is not available in this sftune version** (no `sftune export` command yet); "
                    "merge the adapter, then convert RUN/merged with llama.cpp's convert_hf_to_gguf.py", False)
        if which == "merge" and not (folder / "adapter_config.json").is_file():
            return (f"**Nothing to merge:** {folder} holds no adapter_config.json "
                    "(a full fine-tune is already a full model)", False)
        out = folder / ("merged" if which == "merge" else "export")
        processes.start(processes.sftune_command(which, "--model", str(folder), "--output", str(out)), folder, which, cwd=guard.base)
    except Exception as e:
        return f"**Could not start {which}:** {e}", False
    return f"{which} started", True


def _choices(runs_root: Path):
    import gradio as gr

    return gr.Dropdown(choices=[str(p) for p in runs.list_runs(runs_root)])


def build_eval(guard: PathGuard, runs_root: Path):
    import gradio as gr

    with gr.Row():
        run = gr.Dropdown(choices=[str(p) for p in runs.list_runs(runs_root)], allow_custom_value=True, label="run", scale=4)
        refresh = gr.Button("Refresh runs", scale=1)
    with gr.Row():
        questions = gr.Checkbox(value=True, label="answer the questions (both models)")
        forgetting = gr.Checkbox(value=True, label="forgetting check (general-text perplexity)")
        max_new = gr.Number(value=128, precision=0, label="max_new_tokens", minimum=1)
        go = gr.Button("Evaluate", variant="primary")
    message = gr.Markdown(elem_id="eval-message")
    status = gr.Markdown()
    report = gr.Markdown(label="eval.md")
    log = gr.Textbox(label="log tail", lines=8, max_lines=8)

    go.click(lambda *a: start_eval(guard, *a), [run, questions, forgetting, max_new], message)
    refresh.click(lambda: _choices(runs_root), outputs=run)
    gr.Timer(2.0).tick(lambda r: job_view(r, "eval", "eval/eval.md"), run, [status, log, report], show_progress="hidden")


def build_export(guard: PathGuard, runs_root: Path):
    import gradio as gr

    with gr.Row():
        run = gr.Dropdown(choices=[str(p) for p in runs.list_runs(runs_root)], allow_custom_value=True, label="run", scale=4)
        refresh = gr.Button("Refresh runs", scale=1)
    with gr.Row():
        merge = gr.Button("Merge the adapter into a full model (RUN/merged)", variant="primary")
        gguf = gr.Button("Export GGUF (RUN/export)", elem_id="export-gguf")
    message = gr.Markdown(elem_id="export-message")
    status = gr.Markdown()
    log = gr.Textbox(label="log tail", lines=8, max_lines=8)
    job = gr.State("merge")

    def start(run_v, which):
        text, started = start_export(guard, run_v, which)
        return text, which if started else gr.skip()

    merge.click(lambda r: start(r, "merge"), run, [message, job])
    gguf.click(lambda r: start(r, "export"), run, [message, job])
    refresh.click(lambda: _choices(runs_root), outputs=run)
    gr.Timer(2.0).tick(lambda r, j: job_view(r, j)[:2], [run, job], [status, log], show_progress="hidden")
