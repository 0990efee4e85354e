"""The Chat page: talk to a run (adapter or full model) or any model, with the base model answering
the same question beside it; answers stream in as they are generated."""

from __future__ import annotations

from pathlib import Path

from . import runs
from .access import PathGuard
from .chat import base_of, messages, stream_answers


def model_choices(runs_root: Path) -> list[str]:
    return [str(p) for p in runs.list_runs(runs_root) if (p / "config.json").is_file() or (p / "adapter_config.json").is_file()] + ["default"]


def build(guard: PathGuard, runs_root: Path):
    import gradio as gr

    with gr.Row():
        model = gr.Dropdown(choices=model_choices(runs_root), value="default", allow_custom_value=True, scale=3,
                            label="model", info="a finished run, 'default', a model folder or a hub name", elem_id="chat-model")
        refresh = gr.Button("Refresh runs", scale=1)
        compare = gr.Checkbox(value=True, label="side by side with the base", scale=1, elem_id="chat-compare")
        base = gr.Textbox(label="base model", placeholder="default: the one the run was trained from", scale=2)
    with gr.Accordion("System prompt and sampling", open=False):
        system = gr.Textbox(label="system prompt", lines=2)
        with gr.Row():
            temperature = gr.Slider(0, 2, value=0.0, step=0.05, label="temperature", info="0 = greedy (repeatable)")
            top_p = gr.Slider(0.05, 1, value=1.0, step=0.05, label="top_p")
            top_k = gr.Number(value=0, precision=0, label="top_k", info="0 = no limit")
            max_new = gr.Number(value=256, precision=0, label="max_new_tokens", minimum=1)
            rep = gr.Slider(1, 2, value=1.0, step=0.05, label="repetition_penalty")
    error = gr.Markdown(elem_id="chat-error")
    with gr.Row():
        run_chat = gr.Chatbot(label="model", height=380, elem_id="chat-run")
        base_chat = gr.Chatbot(label="base", height=380, elem_id="chat-base")
    with gr.Row():
        box = gr.Textbox(placeholder="Ask something and press Enter", show_label=False, scale=5, elem_id="chat-input")
        send = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
        clear = gr.Button("Clear", scale=1)

    def respond(question, hist, hist_base, model_v, compare_v, base_v, system_v, temp, tp, tk, mx, rp):
        hist, hist_base = list(hist or []), list(hist_base or [])
        if not (question or "").strip():
            yield "type a question first", hist, hist_base, question
            return
        try:
            name = guard.model_or_path(model_v or "default")
            names, histories = [name], [hist]
            if compare_v:
                base_name = guard.model_or_path(base_v) if (base_v or "").strip() else (base_of(name) or name)
                names.append(base_name)
                histories.append(hist_base)
        except Exception as e:
            yield f"**{e}**", hist, hist_base, question
            return
        sampling = dict(temperature=float(temp), top_p=float(tp), top_k=int(tk or 0), max_new_tokens=int(mx or 256),
                        repetition_penalty=float(rp))
        prompts = [messages(h, question, system_v or None) for h in histories]
        for h in histories:
            h += [{"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        try:
            for texts in stream_answers(names, prompts, sampling, cache_dir=None):
                for h, t in zip(histories, texts):
                    h[-1] = {"role": "assistant", "content": t}
                yield "", hist, hist_base, ""
        except Exception as e:  # a model that does not load, a template that fails: say so in the page
            yield f"**Could not answer:** {e}  \nCheck the model path (a finished run folder holds config.json or adapter_config.json).", hist, hist_base, question

    inputs = [box, run_chat, base_chat, model, compare, base, system, temperature, top_p, top_k, max_new, rep]
    outputs = [error, run_chat, base_chat, box]
    box.submit(respond, inputs, outputs)
    send.click(respond, inputs, outputs)
    clear.click(lambda: ([], [], ""), outputs=[run_chat, base_chat, error])
    def refresh_choices():
        return gr.Dropdown(choices=model_choices(runs_root))

    refresh.click(refresh_choices, outputs=model)
    return {"model": model, "refresh_choices": refresh_choices}
