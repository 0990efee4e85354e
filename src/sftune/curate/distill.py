"""``sftune curate distill``: a teacher model writes the answers; the output is a training set.

For each input row (with or without an answer), the prompt is the conversation minus its final
assistant turn. The teacher answers it with its own chat template through
:func:`sftune.infer.generate.generate_texts`, and the output row is the prompt plus the teacher's
answer, with ``meta`` naming the teacher and the ``finish_reason``. Answers cut by
``max_new_tokens`` are dropped (and counted) unless ``keep_truncated``.

Resumable: rows already in the output are skipped when the command is run again (see
:mod:`sftune.curate.resumable`); the loop is :func:`sftune.infer.driver.answer_pending`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data.conversation import Conversation, Message
from .io import CurateReport, where
from .resumable import ResumableOutput, note_resume, prompt_of, prompt_sha


@dataclass
class DistillOptions:
    max_new_tokens: int = 512
    temperature: float = 0.0
    """0 = greedy (deterministic); sampling is seeded per chunk of prompts."""
    top_p: float = 1.0
    batch_size: int = 8
    seed: int = 0
    keep_truncated: bool = False
    """Keep answers cut by max_new_tokens (meta.finish_reason = 'length') instead of dropping them."""
    chunk: int | None = None
    """Prompts generated between two writes to the output (default: 4 batches)."""


def answered(conv: Conversation, prompt: list[Message], text: str) -> Conversation:
    """The output conversation: the prompt followed by the new answer."""
    if conv.kind == "completion":
        return Conversation.completion(prompt[0].content, text, source=conv.source)
    return Conversation.chat([Message(m.role, m.content) for m in prompt] + [Message("assistant", text)], source=conv.source)


def generation_input(conv: Conversation, prompt: list[Message]):
    """What ``generate_texts`` takes: message dicts for chat rows, the row itself for raw prompts."""
    if conv.kind == "chat":
        return [{"role": m.role, "content": m.content} for m in prompt]
    return conv


def pending_prompts(convs: list[Conversation], report: CurateReport) -> tuple[dict[int, list[Message]], dict[int, str]]:
    """Input row -> prompt (rows without one are dropped as ``no_prompt``), and input row -> prompt hash."""
    prompts: dict[int, list[Message]] = {}
    for i, c in enumerate(convs):
        p = prompt_of(c)
        if p is None:
            report.drop("no_prompt", where(c, i), "a text row or a conversation without a user turn")
        else:
            prompts[i] = p
    return prompts, {i: prompt_sha(p) for i, p in prompts.items()}


def distill(
    convs: list[Conversation],
    model,
    tokenizer,
    output: str | Path,
    report: CurateReport,
    opts: DistillOptions | None = None,
    *,
    teacher: str = "model",
    progress: bool = True,
) -> int:
    """Answer every prompt with ``model`` and append the rows to ``output``; returns rows written now."""
    from ..infer.driver import answer_pending

    opts = opts or DistillOptions()
    report.seen(len(convs))
    prompts, shas = pending_prompts(convs, report)
    written = 0
    with ResumableOutput(output, shas) as out:
        note_resume(report, out, prompts)

        def write(i: int, candidates: list[dict]) -> None:
            nonlocal written
            (res,) = candidates
            if res["finish_reason"] == "length" and not opts.keep_truncated:
                detail = f"answer cut at {res['completion_tokens']} tokens (max_new_tokens {opts.max_new_tokens})"
                out.skip(i, shas[i], "cut_by_length", detail)
                report.drop("cut_by_length", where(convs[i], i), detail)
                return
            meta = {
                "teacher": teacher, "finish_reason": res["finish_reason"],
                "completion_tokens": res["completion_tokens"], "input_row": i, "prompt_sha": shas[i],
            }
            if convs[i].source is not None:
                meta["source"] = str(convs[i].source)
            out.write({**answered(convs[i], prompts[i], res["text"]).to_dict(), "meta": meta})
            written += 1

        answer_pending(
            model, tokenizer, {i: generation_input(convs[i], p) for i, p in prompts.items()}, out, write,
            chunk=opts.chunk or opts.batch_size * 4, batch_size=opts.batch_size, seed=opts.seed, progress=progress,
            desc="distilling", max_new_tokens=opts.max_new_tokens, temperature=opts.temperature, top_p=opts.top_p,
        )
        report.keep(out.previous_rows + written)
    report.details.update({"teacher": teacher, "options": vars(opts).copy(), "written_now": written})
    return written
