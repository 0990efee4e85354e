"""Resumable JSONL output for the commands that call a model (distill, best-of-k), and their shared step.

Generation is slow, so those commands append each finished row to the output at once and, when
run again with the same ``--output``, skip every input row already answered. Each output row
carries ``meta.input_row`` (its position in the input) and ``meta.prompt_sha`` (a hash of its
prompt), so a resumed run can check it is continuing the same input. Rows deliberately left out
(e.g. a teacher answer cut by the length limit) are recorded in ``OUTPUT.skipped.jsonl`` so they
are not generated again either. A half-written last line (the process was killed mid-write) is
cut off and redone.

:func:`answer_rows` is everything distill and best-of-k share: find each row's prompt, skip the
rows already done, answer the rest through :func:`sftune.infer.driver.answer_pending`, and write
the prompt plus the answer each step picks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError
from ..data.conversation import Conversation, Message
from .io import CurateReport, where


def prompt_of(conv: Conversation) -> list[Message] | None:
    """The prompt to answer: the conversation minus its final assistant turn; ``None`` for text rows.

    >>> c = Conversation.chat([Message("user", "Hi"), Message("assistant", "Hello")])
    >>> [m.content for m in prompt_of(c)]
    ['Hi']
    """
    if conv.kind == "text":
        return None
    if conv.kind == "completion":
        return [conv.messages[0]]
    msgs = list(conv.messages)
    if msgs and msgs[-1].role == "assistant":
        msgs = msgs[:-1]
    return msgs if any(m.role == "user" for m in msgs) else None


def prompt_sha(prompt: list[Message], tools: list[dict] | None = None) -> str:
    """A hash of what the model is asked: each message's role and text, and for agent rows every
    key the template gets (tool calls, tool results, reasoning) and the ``tools``. Plain rows keep
    the hash of role and text only, so their outputs written before tools were hashed still resume.

    >>> prompt_sha([Message("user", "Hi")]) == prompt_sha([Message("user", "Hi")], tools=[{"type": "function"}])
    False
    """
    if not tools and all(m.is_plain for m in prompt):
        data = json.dumps([[m.role, m.content] for m in prompt], ensure_ascii=False)
    else:
        data = json.dumps({"messages": [m.to_dict() for m in prompt], "tools": tools}, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:16]


def skipped_path(output: str | Path) -> Path:
    p = Path(output)
    return p.with_name((p.stem if p.suffix == ".jsonl" else p.name) + ".skipped.jsonl")


def _read_done(path: Path) -> tuple[list[dict], bool]:
    """Rows of an existing output file; cuts a half-written last line off the file (returns True then)."""
    if not path.exists():
        return [], False
    data = path.read_bytes()
    rows: list[dict] = []
    good_end = 0
    pos = 0
    lineno = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl + 1
        line = data[pos:end]
        lineno += 1
        complete = nl >= 0
        try:
            row = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            row = False
        if row is False or not complete:
            if end < len(data):
                raise ConfigError(
                    f"{path}:{lineno}: not valid JSON in the middle of the file, so it cannot be resumed safely. "
                    "Fix or delete that line, or write to a new --output"
                )
            break  # the last line was cut mid-write: drop it and redo that row
        if row is not None:
            rows.append(row)
        good_end = end
        pos = end
    truncated = good_end < len(data)
    if truncated:
        with open(path, "r+b") as f:
            f.truncate(good_end)
    return rows, truncated


class ResumableOutput:
    """Append-only JSONL output that knows which input rows it already holds."""

    def __init__(self, output: str | Path, prompts: dict[int, str]):
        """``prompts``: input row -> prompt hash, to check an existing output was made from this input."""
        self.path = Path(output)
        self.skip_path = skipped_path(self.path)
        rows, cut = _read_done(self.path)
        skipped, cut2 = _read_done(self.skip_path)
        self.repaired = cut or cut2
        self.done: set[int] = set()
        self.previous_skips: list[dict] = skipped
        self.previous_rows = len(rows)
        for where_, items in ((self.path, [r.get("meta", {}) for r in rows]), (self.skip_path, skipped)):
            for meta in items:
                i, sha = meta.get("input_row"), meta.get("prompt_sha")
                if i is None:
                    raise ConfigError(
                        f"{where_} exists but was not written by this command (a row has no meta.input_row). "
                        "Write to a new --output"
                    )
                if prompts.get(i) != sha:
                    raise ConfigError(
                        f"{where_}: row for input row {i} has a different prompt than the input has now, so it was "
                        "written from another input. Write to a new --output (or delete the old one)"
                    )
                self.done.add(i)
        self._out = open(self.path, "a", encoding="utf-8")
        self._skip = None

    def write(self, row: dict) -> None:
        self._out.write(json.dumps(row, ensure_ascii=False) + "\n")

    def skip(self, input_row: int, sha: str, reason: str, detail: str = "") -> None:
        if self._skip is None:
            self._skip = open(self.skip_path, "a", encoding="utf-8")
        rec = {"input_row": input_row, "prompt_sha": sha, "reason": reason, "detail": detail}
        self._skip.write(json.dumps(rec, ensure_ascii=False) + "\n")

    def flush(self) -> None:
        """After every chunk: what is flushed survives a crash (at most the last chunk is redone)."""
        self._out.flush()
        if self._skip is not None:
            self._skip.flush()

    def close(self) -> None:
        self.flush()
        self._out.close()
        if self._skip is not None:
            self._skip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def note_resume(report, out: ResumableOutput, prompts) -> None:
    """Count rows finished by an earlier run (of ``prompts``' input rows): kept ones as kept, skipped
    ones under their reason again, and say in ``report`` that the run resumed."""
    done = sum(i in out.done for i in prompts)
    for rec in out.previous_skips:
        report.drop(rec.get("reason", "skipped"), f"input row {rec['input_row']}", (rec.get("detail") or "") + " (earlier run)")
    if done:
        report.notes.append(f"resumed: {done} prompts were already done in {out.path} and were skipped")
    if out.repaired:
        report.notes.append("a half-written last line from an interrupted run was removed and redone")
    report.details["resumed_rows"] = done


def answer_message(candidate: dict) -> Message:
    """The assistant message of a generated candidate: with a tool format (``generate_texts``'
    ``message``) its tool calls and reasoning as their own fields, else the text as it came.

    >>> answer_message({"text": "<tool_call>...", "message": {"role": "assistant", "content": None,
    ...     "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]}}).to_dict()
    {'role': 'assistant', 'content': None, 'tool_calls': [{'type': 'function', 'function': {'name': 'f', 'arguments': '{}'}}]}
    >>> answer_message({"text": "Hello"}).to_dict()
    {'role': 'assistant', 'content': 'Hello'}
    """
    msg = candidate.get("message")
    if msg is None:
        return Message("assistant", candidate["text"])
    content = msg.get("content")
    return Message("assistant", content or "", tool_calls=msg.get("tool_calls") or None,
                   reasoning=msg.get("reasoning_content"), content_null=content is None)


def answered(conv: Conversation, prompt: list[Message], candidate: dict, tools: list[dict] | None = None) -> Conversation:
    """The output conversation: the prompt (tool calls, tool results, reasoning and ``tools`` kept;
    per-message training flags reset) followed by the candidate's answer (:func:`answer_message`).
    ``tools`` are the schemas the answer was generated with, when the row had none of its own."""
    if conv.kind == "completion":
        return Conversation.completion(prompt[0].content, candidate["text"], source=conv.source)
    msgs = [dataclasses.replace(m, trainable=None) for m in prompt] + [answer_message(candidate)]
    return Conversation.chat(msgs, source=conv.source, tools=conv.tools or tools)


def generation_input(conv: Conversation, prompt: list[Message], tools: list[dict] | None = None):
    """What ``generate_texts`` takes: for chat rows the prompt as a conversation with the row's
    ``tools`` (else ``tools``), so the template gets them and the messages as training renders
    them (:func:`sftune.infer.generate.render_prompt`); the row itself for raw prompts."""
    if conv.kind == "chat":
        return Conversation.chat(prompt, tools=conv.tools or tools)
    return conv


def pending_prompts(convs: list[Conversation], report: CurateReport,
                    tools: list[dict] | None = None) -> tuple[dict[int, list[Message]], dict[int, str]]:
    """Input row -> prompt (rows without one are dropped as ``no_prompt``), and input row -> prompt hash
    (over the row's tools, else ``tools``: the schemas its answer is generated with)."""
    prompts: dict[int, list[Message]] = {}
    for i, c in enumerate(convs):
        p = prompt_of(c)
        if p is None:
            report.drop("no_prompt", where(c, i), "a text row or a conversation without a user turn")
        else:
            prompts[i] = p
    return prompts, {i: prompt_sha(p, convs[i].tools or tools) for i, p in prompts.items()}


@dataclass
class Cut:
    """What a step's ``pick`` returns for a row it leaves out because its answer was cut by max_new_tokens."""

    detail: str


def answer_rows(
    convs: list[Conversation],
    model,
    tokenizer,
    output: str | Path,
    report: CurateReport,
    pick: Callable[[int, list[Message], list[dict]], tuple[dict, dict] | Cut],
    *,
    tool_use: dict | None = None,
    **loop,
) -> int:
    """Answer every prompt of ``convs`` not yet in ``output`` and append the picked answers; returns rows written now.

    ``pick(i, prompt, candidates)`` gets input row ``i``, its prompt messages and its generated
    candidates, and returns ``(candidate, meta)`` to write the prompt plus that candidate's answer
    (``meta`` gains ``input_row``, ``prompt_sha`` and ``source``), or a :class:`Cut` to leave the row out:
    counted as ``cut_by_length`` and recorded in ``OUTPUT.skipped.jsonl`` so it is not generated
    again. ``loop`` goes to :func:`sftune.infer.driver.answer_pending` (``chunk``, ``batch_size``,
    ``seed``, ``progress``, ``desc`` and the sampling settings). ``report`` counts the rows seen,
    kept (by earlier runs too) and dropped.

    ``tool_use`` (:meth:`sftune.options.ToolUseOptions.settings_for`): ``tools`` offered to rows
    without their own, ``template_kwargs`` for the chat template, and a ``tool_format`` to read
    each answer's tool calls and reasoning into their own fields of the written message (without
    one the answer is written as the text the model produced). Rows with tools, or ``tools``
    offered, read answers in the format detected from the template unless one is given.
    """
    from ..infer.driver import answer_pending

    tool_use = tool_use or {}
    tools = tool_use.get("tools")
    for key in ("template_kwargs", "tool_format"):
        if tool_use.get(key):
            loop[key] = tool_use[key]
    if "tool_format" not in loop and (tools or any(c.tools for c in convs)):
        loop["tool_format"] = "auto"  # calls become tool_calls, not markup inside the answer's text
    report.seen(len(convs))
    prompts, shas = pending_prompts(convs, report, tools)
    written = 0
    with ResumableOutput(output, shas) as out:
        note_resume(report, out, prompts)

        def write(i: int, candidates: list[dict]) -> None:
            nonlocal written
            picked = pick(i, prompts[i], candidates)
            if isinstance(picked, Cut):
                out.skip(i, shas[i], "cut_by_length", picked.detail)
                report.drop("cut_by_length", where(convs[i], i), picked.detail)
                return
            candidate, meta = picked
            meta.update(input_row=i, prompt_sha=shas[i])
            if convs[i].source is not None:
                meta["source"] = str(convs[i].source)
            out.write({**answered(convs[i], prompts[i], candidate, tools).to_dict(), "meta": meta})
            written += 1

        answer_pending(model, tokenizer, {i: generation_input(convs[i], p, tools) for i, p in prompts.items()}, out, write, **loop)
        report.keep(out.previous_rows + written)
    return written
