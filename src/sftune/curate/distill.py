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
from .io import CurateReport
from .resumable import Cut, answer_rows


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
    opts = opts or DistillOptions()

    def pick(i: int, prompt: list[Message], candidates: list[dict]) -> tuple[str, dict] | Cut:
        (res,) = candidates
        if res["finish_reason"] == "length" and not opts.keep_truncated:
            return Cut(f"answer cut at {res['completion_tokens']} tokens (max_new_tokens {opts.max_new_tokens})")
        return res["text"], {"teacher": teacher, "finish_reason": res["finish_reason"], "completion_tokens": res["completion_tokens"]}

    written = answer_rows(
        convs, model, tokenizer, output, report, pick, chunk=opts.chunk or opts.batch_size * 4, batch_size=opts.batch_size,
        seed=opts.seed, progress=progress, desc="distilling",
        max_new_tokens=opts.max_new_tokens, temperature=opts.temperature, top_p=opts.top_p,
    )
    report.details.update({"teacher": teacher, "options": vars(opts).copy(), "written_now": written})
    return written
