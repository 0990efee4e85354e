"""``sftune generate``: a prompt file in, an answer file out (batched, in input order, resumable).

The output has one JSON line per input row, in input order, each carrying its ``index`` and its
prompt, so a run started again with the same ``--output`` can check that the rows already there
answer the same prompts and continue after them (the loop is :mod:`sftune.infer.driver`'s).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .driver import answer_pending


def _prompt_record(conv) -> dict:
    """How a prompt is written in the output: OpenAI messages (with their tool calls, tool results
    and reasoning, and the row's ``tools``), or the raw prompt text. Plain chats write exactly
    ``role``/``content``, so answer files written before tool support still resume."""
    if conv.kind == "chat":
        rec = {"messages": [m.to_template() for m in conv.prompt_messages]}
        if conv.tools:
            rec["tools"] = conv.tools
        return rec
    return {"prompt": conv.messages[0].content}


def _read_done_rows(output, convs) -> tuple[int, int]:
    """How many complete rows ``output`` already holds for these prompts, and their byte length.

    A last line without its newline was cut off mid-write and is discarded. Any complete row
    whose prompt differs from the input's row at the same position means the file belongs to
    other input: that is an error, not something to overwrite silently.
    """
    from ..data.report import DataError

    data = output.read_bytes()
    n, end = 0, 0
    for raw in data.split(b"\n")[:-1]:  # the piece after the last newline is partial (or empty)
        try:
            row = json.loads(raw)
        except ValueError:
            break  # a torn write followed by a newline; regenerate from here
        where = f"{output}:{n + 1}"
        if n >= len(convs):
            raise DataError(f"the output already has more rows than the input has prompts ({len(convs)})", where,
                            fix="pass another --output, or delete the file to start over")
        if not isinstance(row, dict) or row.get("index") != n or {k: row.get(k) for k in _prompt_record(convs[n])} != _prompt_record(convs[n]):
            raise DataError(f"this row is not the answer to input row {n} ({convs[n].source}): the output file was written for other input",
                            where, fix="pass another --output, or delete the file to start over")
        n += 1
        end += len(raw) + 1
    return n, end


class AnswerFile:
    """The answer file, opened for appending after the rows it already holds for ``convs``.

    ``done`` is the input rows answered by an earlier run (always the first N); a torn last line
    is cut off first. ``flush()`` also fsyncs, so a row counted as written survives a power cut.
    """

    def __init__(self, path: Path, convs):
        n = 0
        if path.exists():
            n, end = _read_done_rows(path, convs)
            with open(path, "r+b") as f:
                f.truncate(end)  # drop a torn last line before appending
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.done = range(n)
        self._f = open(path, "a", encoding="utf-8")

    def write(self, row: dict) -> None:
        self._f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def flush(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def read_prompts(input_path, *, format: str = "auto", system_prompt: str | None = None, skip_bad_rows: bool = False):
    """(conversations, report) of a prompt file; answers are optional. Bad rows raise unless skipped."""
    from ..config import DataSource
    from ..data.readers import read_conversations
    from ..data.report import DataError, DataReport

    if not Path(input_path).exists():
        raise FileNotFoundError(f"input file not found: {input_path}")
    report = DataReport(strict=not skip_bad_rows)
    convs = read_conversations(DataSource(path=str(input_path), format=format), report, system_prompt=system_prompt, require_answer=False)
    if not convs:
        raise DataError("no prompts to answer (the file is empty or every row was dropped)", str(input_path),
                        fix="check the file; see the dropped-row reasons above" if report.n_dropped else "add rows")
    return convs, report


def generate_file(
    model,
    tokenizer,
    input_path,
    output_path,
    *,
    format: str = "auto",
    system_prompt: str | None = None,
    skip_bad_rows: bool = False,
    batch_size: int = 8,
    seed: int | None = None,
    progress: bool = True,
    prompts: tuple | None = None,
    **sampling,
) -> dict:
    """Answer every prompt of ``input_path`` into ``output_path`` (JSON lines), in input order.

    Input is any layout/file type ``sftune.data.readers`` reads; a row that already has an
    answer is asked everything before its last assistant turn. Each output line is::

        {"index": 0, "source": "prompts.jsonl:1", "messages": [{"role": "user", "content": "Hi"}],
         "answer": "Hello!", "prompt_tokens": 31, "completion_tokens": 4, "finish_reason": "stop"}

    (``"prompt"`` instead of ``"messages"`` for raw-text prompts; ``"answers"`` with every
    candidate when ``num_return_sequences > 1``). Rows are written and flushed batch by batch;
    if ``output_path`` already holds answers for the first N prompts, generation resumes at
    N + 1, so an interrupted run loses at most one batch. With a ``seed`` each batch is seeded
    from its position, so a resumed sampled run gives the same rows as an uninterrupted one.

    Resuming checks that the rows already written answer the same prompts; it cannot know
    whether they were generated with the same model or sampling settings, so change those only
    together with ``output_path``.

    ``prompts`` is :func:`read_prompts`' result when the caller has already read the file
    (the CLI does, to report bad input before spending time loading the model).

    Returns ``{"rows", "skipped_existing", "generated", "dropped", "dropped_by_reason", "output"}``.
    """
    from ..errors import ConfigError

    if batch_size < 1:  # checked before the prompts are read: a bad setting fails at once
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}", field="batch_size", fix="pass --batch-size 1 or more")
    output_path = Path(output_path)
    convs, report = prompts or read_prompts(input_path, format=format, system_prompt=system_prompt, skip_bad_rows=skip_bad_rows)
    k = sampling.get("num_return_sequences", 1)

    with AnswerFile(output_path, convs) as out:
        def write(i: int, cands: list[dict]) -> None:
            conv, best = convs[i], cands[0]
            row = {"index": i, "source": str(conv.source) if conv.source else None, **_prompt_record(conv),
                   "answer": best["text"], "prompt_tokens": best["prompt_tokens"],
                   "completion_tokens": best["completion_tokens"], "finish_reason": best["finish_reason"]}
            if "message" in best:  # the reply read in the model's tool format: calls and reasoning apart
                row.update({key: best["message"][key] for key in ("tool_calls", "reasoning_content") if key in best["message"]})
            if k > 1:
                row["answers"] = [{key: c[key] for key in ("text", "completion_tokens", "finish_reason")} for c in cands]
            out.write(row)

        done = len(out.done)
        answer_pending(model, tokenizer, dict(enumerate(convs)), out, write, chunk=batch_size, batch_size=batch_size,
                       seed=seed, progress=progress, desc="generating", unit="row", **sampling)
    return {"rows": len(convs), "skipped_existing": done, "generated": len(convs) - done,
            "dropped": report.n_dropped, "dropped_by_reason": dict(report.dropped), "output": str(output_path)}
