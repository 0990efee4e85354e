"""The Evaluate and Export pages: ``sftune eval``, ``sftune merge`` and ``sftune export`` (GGUF) run
as background jobs in the run's folder; the page shows their log and result."""

from __future__ import annotations

from pathlib import Path

from . import processes, runs
from .access import PathGuard


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


def eval_command(folder: Path, questions: bool = True, forgetting: bool = True, max_new_tokens: int = 128) -> list[str]:
    """The ``sftune eval`` arguments for a run (report in RUN/eval)."""
    args = ["eval", "--model", str(folder), "--output", str(folder / "eval"), "--max-new-tokens", str(int(max_new_tokens))]
    return args + ([] if questions else ["--no-questions"]) + ([] if forgetting else ["--no-forgetting"])


def start_eval(guard: PathGuard, run: str, questions: bool = True, forgetting: bool = True, max_new_tokens: int = 128) -> str:
    """Start ``sftune eval`` on a run (report in RUN/eval); returns what to show."""
    try:
        folder = guard.output_dir(run or "", what="run folder")
        processes.start(processes.sftune_command(*eval_command(folder, questions, forgetting, max_new_tokens)), folder, "eval",
                        cwd=guard.base)
    except Exception as e:  # shown in the page
        return f"**Could not start the evaluation:** {e}"
    return "evaluation started"


#: The quants offered on the Export page: those the gguf package writes itself, then the common
#: llama.cpp K-quants (written as f16; the log shows the llama-quantize command that finishes them).
GGUF_QUANTS = ["f16", "bf16", "f32", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "q6_k", "q5_k_m", "q4_k_m"]


def gguf_path(folder: Path, quant: str) -> Path:
    """Where the Export page writes a run's GGUF: ``RUN/<run name>-<quant>.gguf`` (as ``train --export``).

    >>> gguf_path(Path("runs/mine"), "Q8_0").as_posix()
    'runs/mine/mine-q8_0.gguf'
    """
    return folder / f"{folder.name}-{quant.lower()}.gguf"


def export_command(folder: Path, which: str, quant: str = "f16", force: bool = False, ollama: bool = False) -> list[str]:
    """The ``sftune`` arguments of a merge (-> RUN/merged) or GGUF export (-> RUN/<name>-<quant>.gguf)."""
    if which == "merge":
        return ["merge", "--model", str(folder), "--output", str(folder / "merged")]
    if quant not in GGUF_QUANTS:
        raise ValueError(f"quant {quant!r}: choose one of {', '.join(GGUF_QUANTS)}")
    args = ["export", "--model", str(folder), "--output", str(gguf_path(folder, quant)), "--quant", quant]
    return args + (["--force"] if force else []) + (["--ollama"] if ollama else [])


def start_export(guard: PathGuard, run: str, which: str, quant: str = "f16", force: bool = False,
                 ollama: bool = False) -> tuple[str, bool]:
    """Start ``sftune merge`` or ``sftune export`` on a run as a background job; (message, started)."""
    try:
        folder = guard.output_dir(run or "", what="run folder")
        if not folder.is_dir():
            return f"**No such run folder:** {folder}; choose a run from the list (Refresh runs finds new ones)", False
        if which == "merge" and not (folder / "adapter_config.json").is_file():
            return (f"**Nothing to merge:** {folder} holds no adapter_config.json "
                    "(a full fine-tune is already a full model)", False)
        args = export_command(folder, which, quant, force, ollama)
        if which == "export" and not force and Path(args[4]).exists():
            return f"**{args[4]} already exists:** tick *overwrite* to replace it, or choose another quant", False
        processes.start(processes.sftune_command(*args), folder, which, cwd=guard.base)
    except Exception as e:
        return f"**Could not start {which}:** {e}", False
    return ("merge started" if which == "merge" else f"export started: writing `{args[4]}`"), True


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
    with gr.Row():
        quant = gr.Dropdown(choices=GGUF_QUANTS, value="q8_0", label="GGUF quant", elem_id="export-quant",
                            info="f16/bf16/f32 and q8_0..q4_0 are written directly; a K-quant is written as f16 "
                                 "and the log shows the llama-quantize command that finishes it")
        force = gr.Checkbox(value=False, label="overwrite an existing file", elem_id="export-force")
        ollama = gr.Checkbox(value=False, label="also write an Ollama Modelfile", elem_id="export-ollama")
        gguf = gr.Button("Export GGUF (RUN/<name>-<quant>.gguf)", elem_id="export-gguf")
    message = gr.Markdown(elem_id="export-message")
    status = gr.Markdown(elem_id="export-status")
    log = gr.Textbox(label="log tail", lines=8, max_lines=8, elem_id="export-log")
    job = gr.State("merge")

    def start(run_v, which, quant_v="f16", force_v=False, ollama_v=False):
        text, started = start_export(guard, run_v, which, quant_v, force_v, ollama_v)
        return text, which if started else gr.skip()

    merge.click(lambda r: start(r, "merge"), run, [message, job])
    gguf.click(lambda r, q, f, o: start(r, "export", q, f, o), [run, quant, force, ollama], [message, job])
    refresh.click(lambda: _choices(runs_root), outputs=run)
    gr.Timer(2.0).tick(lambda r, j: job_view(r, j)[:2], [run, job], [status, log], show_progress="hidden")
