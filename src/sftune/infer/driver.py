"""The resumable generation loop shared by ``sftune generate``, ``curate distill`` and ``curate best-of-k``.

Generation is slow and runs get interrupted, so each of those commands writes its output as it
goes and, run again with the same output, answers only what is missing. What differs between
them is the output file (its row format, how it proves it was written from the same input) and
what they do with each answer; the loop itself is this one:

1. the prompts still to answer are the input rows not in ``out.done``, in input order;
2. they are answered ``chunk`` at a time through :func:`sftune.infer.generate.generate_texts`,
   each chunk seeded with ``seed + its first input row``, so with a fixed chunk a row's answer
   does not depend on where an earlier run stopped (a resumed run writes the same bytes);
3. every answer goes to ``on_answers(input_row, candidates)``, which writes (or skips) the row;
4. ``out.flush()`` after each chunk: an interruption loses at most the chunk in flight.

``out`` is any object with ``done`` (a container of finished input rows) and ``flush()``:
:class:`sftune.infer.answer_file.AnswerFile` for ``sftune generate``,
:class:`sftune.curate.resumable.ResumableOutput` for the curation commands.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from typing import Protocol


class ResumableSink(Protocol):
    """Where a resumable run writes: which input rows it already holds, and how to make writes last."""

    done: Container[int]

    def flush(self) -> None: ...


def answer_pending(
    model,
    tokenizer,
    prompts: Mapping[int, object],
    out: ResumableSink,
    on_answers: Callable[[int, list[dict]], None],
    *,
    chunk: int,
    batch_size: int = 8,
    seed: int | None = None,
    progress: bool = True,
    desc: str = "generating",
    unit: str = "prompt",
    **sampling,
) -> int:
    """Answer every prompt whose input row is not in ``out.done``; returns how many were answered now.

    ``prompts`` maps input row -> what ``generate_texts`` takes (a message list or a
    ``Conversation``), in input order. ``sampling`` is passed on to ``generate_texts``
    (``max_new_tokens``, ``temperature``, ``num_return_sequences``, ...); ``on_answers`` gets
    each row's list of candidates (``{"text", "prompt_tokens", "completion_tokens",
    "finish_reason"}``).
    """
    from tqdm.auto import tqdm

    # generate_texts is looked up per call, so a wrapper around it (tests count prompts so) is used
    from . import generate

    todo = [i for i in prompts if i not in out.done]
    with tqdm(total=len(prompts), initial=len(prompts) - len(todo), desc=desc, unit=unit, disable=not progress) as bar:
        for start in range(0, len(todo), chunk):
            rows = todo[start : start + chunk]
            answers = generate.generate_texts(
                model, tokenizer, [prompts[i] for i in rows], batch_size=batch_size,
                seed=None if seed is None else seed + rows[0], **sampling,
            )
            for i, candidates in zip(rows, answers):
                on_answers(i, candidates)
            out.flush()
            bar.update(len(rows))
    return len(todo)
