"""What a run writes and prints besides the weights: the answers before and after, the files, the summary.

``run.train`` asks the same questions before and after training (:func:`ask`), writes the
tokenizer with its template, the config, ``run_info.json`` and the before/after tables
(:func:`save_outputs`), and prints :func:`summary`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import SFTConfig, save_config

if TYPE_CHECKING:
    from .run import RunResult

RESOURCES = Path(__file__).resolve().parent.parent / "resources"


def eval_questions(cfg: SFTConfig) -> list[str]:
    if cfg.eval_questions is not None:
        return list(cfg.eval_questions)
    f = RESOURCES / "eval_questions.json"
    if f.is_file():
        q = json.loads(f.read_text(encoding="utf-8"))
        return list(q.get("identity", [])) + list(q.get("general", []))
    return ["Give me a 1-sentence introduction of LLM.", "Calculate 1+1-1", "What's the difference between thread and process?"]


def ask(model, tokenizer, questions: list[str], max_new_tokens: int = 64, cfg: SFTConfig | None = None) -> list[str]:
    """Greedy answers, rendered as training renders (template variables; the eval tools, if any)."""
    from ..infer.generate import generate_texts
    from ..options import ToolUseOptions

    tools = ToolUseOptions(tools=cfg.eval_tools).load_tools() if cfg is not None and cfg.eval_tools else None
    convs = [[{"role": "user", "content": q}] for q in questions]
    # generate_texts switches to eval mode (no dropout, no NEFTune) and restores the mode itself.
    res = generate_texts(model, tokenizer, convs, max_new_tokens=max_new_tokens if tools is None else 2 * max_new_tokens,
                         temperature=0.0, batch_size=8, tools=tools,
                         template_kwargs=cfg.template_kwargs if cfg is not None else None)
    return [r[0]["text"].strip() for r in res]


def side_by_side(questions, before, after) -> str:
    lines = []
    for q, b, a in zip(questions, before, after):
        lines += [f"Q: {q}", f"  before: {b}", f"  after:  {a}", ""]
    return "\n".join(lines)


def saved_dtype(cfg: SFTConfig):
    """The dtype full weights are written in: --save-dtype, else the base model's own ``dtype``.

    Training keeps float32 master weights whatever the compute precision; a bf16 base saved back
    as float32 would double its size and surprise its users.
    """
    from ..model.loading import adapter_base, is_adapter_dir, resolve_model
    from ..model.precision import save_precision, torch_dtype

    path = Path(resolve_model(cfg.model, cfg.cache_dir))
    if is_adapter_dir(path):
        path = Path(adapter_base(path, cfg.cache_dir))
    name = save_precision(cfg.save_dtype, path)
    return torch_dtype(name) if name else None


def save_outputs(trainer, tokenizer, cfg, out: Path, precision, why, metrics, data_info, questions, before, after):
    from ..model.chat_settings import save_chat_settings

    # The model itself was written by distributed.save_model (full weights or the adapter, safetensors).
    # The Trainer also pickles its arguments; the output holds no pickles (sftune_config.yaml and
    # run_info.json record the same settings in plain text).
    (out / "training_args.bin").unlink(missing_ok=True)
    tokenizer.save_pretrained(str(out))  # with the chat template used in training
    model = trainer.model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    gen = getattr(base, "generation_config", None)
    if gen is not None and tokenizer.eos_token_id is not None:
        gen.eos_token_id = tokenizer.eos_token_id
        gen.pad_token_id = tokenizer.pad_token_id
        gen.save_pretrained(str(out))
    save_config(cfg, out / "sftune_config.yaml")
    save_chat_settings(out, template_kwargs=cfg.template_kwargs, tool_format=cfg.tool_format)
    meta = {
        "precision": precision, "precision_reason": why, "world_size": trainer.args.world_size,
        "micro_batch": trainer.args.per_device_train_batch_size,
        "gradient_accumulation_steps": trainer.args.gradient_accumulation_steps,
        "data": data_info, "metrics": metrics,
    }
    (out / "run_info.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    if questions:
        rows = [{"question": q, "before": b, "after": a} for q, b, a in zip(questions, before, after)]
        (out / "before_after.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False), encoding="utf-8")
        md = ["| question | before | after |", "|---|---|---|"]
        md += [f"| {r['question']} | {r['before']} | {r['after']} |".replace("\n", " ") for r in rows]
        (out / "before_after.md").write_text("\n".join(md) + "\n", encoding="utf-8")


def summary(res: RunResult, trainer) -> str:
    m = res.metrics
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    lines = ["", "=" * 72, "sftune: training finished"]
    lines.append(f"  time        {m.get('wall_seconds', 0):.0f} s (training {m.get('train_runtime', 0):.0f} s)")
    lines.append(f"  tokens      {trainer.state.num_input_tokens_seen:,} seen, {trainer.state.global_step} optimizer steps")
    if losses:
        lines.append(f"  loss        first {losses[0]:.4f} -> final {losses[-1]:.4f}")
    if "eval_loss" in m:
        lines.append(f"  held-out    loss {m['eval_loss']:.4f}")
    lines.append(f"  written to  {res.output_dir}/ (model, tokenizer + chat template, sftune_config.yaml, metrics.jsonl, loss_curve.png)")
    if res.questions:
        lines += ["", "before / after, greedy, same questions:", side_by_side(res.questions, res.before, res.after)]
    lines.append("=" * 72)
    return "\n".join(lines)
