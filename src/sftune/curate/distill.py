"""``sftune curate distill``: a teacher model writes the answers; the output is a training set.

For each input row (with or without an answer), the prompt is the conversation minus its final
assistant turn. The teacher answers it with its own chat template through
:func:`sftune.infer.generate.generate_texts`, and the output row is the prompt plus the teacher's
answer, with ``meta`` naming the teacher and the ``finish_reason``. Answers cut by
``max_new_tokens`` are dropped (and counted) unless ``keep_truncated``. The options
(:class:`~sftune.options.curation.DistillOptions`) are sampling options, every one applied.

Resumable: rows already in the output are skipped when the command is run again (see
:mod:`sftune.curate.resumable`); the loop is :func:`sftune.infer.driver.answer_pending`.
"""

from __future__ import annotations

from pathlib import Path

from ..data.conversation import Conversation, Message
from ..options.curation import DistillOptions
from .io import CurateReport
from .resumable import Cut, answer_rows

__all__ = ["DistillOptions", "distill"]


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
    tool_use: dict | None = None,
) -> int:
    """Answer every prompt with ``model`` and append the rows to ``output``; returns rows written now.

    ``tool_use``: tools offered to rows without their own, the template's variables and the
    teacher's tool format (see :func:`sftune.curate.resumable.answer_rows`).
    """
    opts = opts or DistillOptions()

    def pick(i: int, prompt: list[Message], candidates: list[dict]) -> tuple[dict, dict] | Cut:
        (res,) = candidates
        if res["finish_reason"] == "length" and not opts.keep_truncated:
            return Cut(f"answer cut at {res['completion_tokens']} tokens (max_new_tokens {opts.max_new_tokens})")
        return res, {"teacher": teacher, "finish_reason": res["finish_reason"], "completion_tokens": res["completion_tokens"]}

    written = answer_rows(
        convs, model, tokenizer, output, report, pick, chunk=opts.chunk or opts.batch_size * 4, batch_size=opts.batch_size,
        seed=opts.seed, progress=progress, desc="distilling", tool_use=tool_use, **opts.generation_args(),
    )
    report.details.update({"teacher": teacher, "options": opts.model_dump(), "written_now": written})
    return written
