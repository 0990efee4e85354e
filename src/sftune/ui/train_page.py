"""The Train page: every option of the schema as a grouped form, the equivalent YAML and command
(live, downloadable), and runs started, stopped and resumed as background processes whose
progress, loss curve and log are read back from their folders every two seconds."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from . import runs
from .access import PathGuard, confine_config
from .form import (
    OPTION_GROUPS, RUN_FIELDS, changed_values, field_specs, group_help, grouped, make_widget, to_command, to_widget_value,
    to_yaml, validate,
)

REFRESH_SECONDS = 2.0


def form_outputs(specs, values, out_dir: Path):
    """(error, yaml, command, yaml file, script file) for the current form values."""
    try:
        chosen = changed_values(specs, values)
        validate(chosen)
        error = ""
    except Exception as e:  # the schema's own message, naming the field
        return f"**Fix the form:** {e}", "", "", None, None
    text, cmd = to_yaml(chosen), to_command(chosen, specs)
    stamp = f"{time.time_ns()}"
    yaml_file = out_dir / f"sftune_train_{stamp}.yaml"
    sh_file = out_dir / f"sftune_train_{stamp}.sh"
    yaml_file.write_text(text, encoding="utf-8")
    sh_file.write_text("#!/bin/sh\n" + cmd + "\n", encoding="utf-8")
    return error, text, cmd, str(yaml_file), str(sh_file)


def run_view(run_dir: str | None):
    """(status line, loss table, log tail) for the selected run."""
    if not run_dir:
        return "no run selected: fill the form and press **Start**", None, ""
    p = runs.progress(run_dir)
    # No table at all until there are losses: a plot first given an empty table keeps the wrong
    # axis types and draws nothing once the rows arrive.
    return p.summary(), runs.loss_frame(p) if p.losses or p.eval_losses else None, p.log


def build(guard: PathGuard, runs_root: Path):
    import gradio as gr

    specs = [s for s in field_specs() if s.name not in RUN_FIELDS]
    downloads = Path(tempfile.mkdtemp(prefix="sftune-ui-"))
    # What the form's defaults amount to, shown before anything is changed.
    _, yaml0, cmd0, yaml_file0, sh_file0 = form_outputs(specs, [to_widget_value(s, s.default) for s in specs], downloads)
    widgets = {}
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Tabs(elem_id="train-form"):
                # One tab per option group of the schema (model, data, method, training), headed by its docstring.
                for name, group in grouped(specs):
                    with gr.Tab(name.capitalize(), id=f"form-{name}"):
                        if name in OPTION_GROUPS:
                            gr.Markdown(group_help(name))
                        half = (len(group) + 1) // 2
                        with gr.Row():
                            for part in (group[:half], group[half:]):
                                with gr.Column():
                                    for spec in part:
                                        widgets[spec.name] = make_widget(spec)
            with gr.Accordion("Equivalent YAML and command", open=True):
                error = gr.Markdown(elem_id="form-error")
                with gr.Row():
                    yaml_code = gr.Code(yaml0, language="yaml", label="config.yaml", elem_id="form-yaml", max_lines=12)
                    cmd_code = gr.Code(cmd0, language="shell", label="command", elem_id="form-cmd", max_lines=12, wrap_lines=True)
                with gr.Row():
                    yaml_dl = gr.DownloadButton("Download config.yaml", value=yaml_file0, size="sm")
                    sh_dl = gr.DownloadButton("Download train.sh", value=sh_file0, size="sm")
        with gr.Column(scale=2):
            run_name = gr.Textbox(label="run folder", placeholder=f"default: {runs_root.name}/ui-<time>", elem_id="run-dir",
                                  info="where the run is written (relative to the workdir)")
            compare = gr.Checkbox(value=False, label="ask the bundled questions before and after training (slower)")
            with gr.Row():
                start = gr.Button("Start", variant="primary", elem_id="run-start")
                stop = gr.Button("Stop", variant="stop", elem_id="run-stop")
                resume = gr.Button("Resume", elem_id="run-resume")
            pick = gr.Dropdown(choices=[str(p) for p in runs.list_runs(runs_root)], label="runs", allow_custom_value=True,
                               elem_id="run-pick", info=f"runs found under {runs_root}")
            message = gr.Markdown(elem_id="run-message")
            status = gr.Markdown(elem_id="run-status")
            plot = gr.LinePlot(None, x="step", y="loss", color="series",
                               title="loss", height=260, elem_id="run-loss")
            log = gr.Textbox(label="log tail", lines=10, max_lines=10, autoscroll=True, elem_id="run-log")
    ordered = [widgets[s.name] for s in specs if s.name in widgets]
    specs = [s for s in specs if s.name in widgets]

    def render(*values):
        return form_outputs(specs, list(values), downloads)

    gr.on([w.change for w in ordered], render, inputs=ordered, outputs=[error, yaml_code, cmd_code, yaml_dl, sh_dl])

    def run_choices(selected=None, newest=False):
        found = [str(p) for p in runs.list_runs(runs_root)]
        return gr.Dropdown(choices=found, value=found[0] if newest and found else selected)

    def on_start(name, compare_v, *values):
        try:
            cfg = confine_config(changed_values(specs, list(values)), guard)
            validate(cfg)
            folder = guard.output_dir(name or str(runs_root / time.strftime("ui-%Y%m%d-%H%M%S")), what="run folder")
            runs.start_run(cfg, folder, compare=compare_v, cwd=guard.base)
        except Exception as e:
            return f"**Could not start:** {e}", gr.skip()
        return f"started in `{folder}`", run_choices(str(folder))

    def on_stop(run_dir):
        if not run_dir:
            return "choose a run first"
        try:
            return "stopped" if runs.stop_run(guard.output_dir(run_dir, what="run folder")) else "that run is not running"
        except Exception as e:
            return f"**Could not stop:** {e}"

    def on_resume(run_dir, compare_v):
        try:
            runs.resume_run(guard.output_dir(run_dir or "", what="run folder"), compare=compare_v, cwd=guard.base)
        except Exception as e:
            return f"**Could not resume:** {e}"
        return f"resuming `{run_dir}` from its last complete checkpoint"

    start.click(on_start, inputs=[run_name, compare, *ordered], outputs=[message, pick])
    stop.click(on_stop, inputs=pick, outputs=message)
    resume.click(on_resume, inputs=[pick, compare], outputs=message)
    timer = gr.Timer(REFRESH_SECONDS)
    timer.tick(run_view, inputs=pick, outputs=[status, plot, log], show_progress="hidden")
    pick.change(run_view, inputs=pick, outputs=[status, plot, log])
    return {"widgets": widgets, "runs": pick, "refresh": run_choices}
