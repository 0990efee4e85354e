"""Every input layout, read into the one canonical :class:`Conversation`.

Layouts (``format``), and the columns that identify each when ``format`` is ``auto``:

=====================  ==================  ====================================================
format                 identifying column  row
=====================  ==================  ====================================================
``alpaca``             ``instruction``     ``instruction``, optional ``input`` (joined to the
                                           instruction with a blank line), ``output``, optional
                                           ``system`` and ``history`` ([user, assistant] pairs)
``sharegpt``           ``conversations``   list of ``{"from", "value"}``; tags ``human``/``user``,
                                           ``gpt``/``assistant``/``model``/``chatgpt``/``bing``,
                                           ``system``, ``tool``/``function``/``observation``,
                                           ``function_call`` (a JSON call); ``tools`` column
``messages``           ``messages``        list of ``{"role", "content", "weight"?}`` (OpenAI /
                                           Hugging Face); ``weight: 0`` = do not train this turn;
                                           with ``tool_calls``, ``tool_call_id``, ``name``,
                                           ``reasoning_content`` and a ``tools`` column for agent
                                           data (see :mod:`sftune.data.messages`)
``prompt_completion``  ``prompt``          ``prompt`` + ``completion``: both strings (raw text,
                                           no template) or both message lists
``text``               ``text``            ``text``: trained on every token
=====================  ==================  ====================================================

Column mapping (``DataSource.columns``) maps canonical names onto the file's own names, for any
layout: ``{"instruction": "instruct", "output": "label"}``; ``{"messages": "dialog", "role":
"speaker", "content": "text", "user": "Q", "assistant": "A"}`` (the last two add role tags).
See :data:`COLUMN_KEYS`.

Bad rows raise :class:`DataError` in strict mode and are otherwise counted in the report under a
stable reason (``missing field 'output'``, ``empty answer``, ...), with the first few locations.

>>> import json, os, tempfile
>>> p = os.path.join(tempfile.mkdtemp(), "a.jsonl")
>>> _ = open(p, "w").write(json.dumps({"instruction": "Add", "input": "1+1", "output": "2"}) + "\\n")
>>> [c] = read_conversations(DataSource(path=p), DataReport())
>>> [(m.role, m.content) for m in c.messages], str(c.source) == p + ":1"
([('user', 'Add\\n\\n1+1'), ('assistant', '2')], True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

from ..config import DataSource
from .conversation import Conversation, Message
from .files import iter_rows
from .json_rows import Span
from .messages import COLUMN_KEYS, ROLE_TAGS, _Bad, _check_chat, _Columns, _get, _maybe_json_list, _messages, _str, _type_name, _with_system, read_tools
from .report import DataError, DataReport
from .toolcalls import tool_names

__all__ = ["COLUMN_KEYS", "FORMATS", "FORMAT_KEYS", "ROLE_TAGS", "detect_format", "iter_conversations", "read_conversations"]

FORMATS = ("alpaca", "sharegpt", "messages", "prompt_completion", "text")

#: The column whose presence identifies each layout.
FORMAT_KEYS = {
    "alpaca": "instruction",
    "sharegpt": "conversations",
    "messages": "messages",
    "prompt_completion": "prompt",
    "text": "text",
}

# ---- layouts -----------------------------------------------------------------------------------
def _alpaca(row: dict, cols: _Columns, require_answer: bool) -> Conversation:
    fix = 'alpaca rows are {"instruction": ..., "input": ... (optional), "output": ...}'
    instruction = _str(row, cols, "instruction", required=True, fix=fix)
    extra = _str(row, cols, "input", required=False, fix=fix)
    output = _str(row, cols, "output", required=require_answer, fix=fix)
    system = _str(row, cols, "system", required=False, fix=fix)
    user = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    if not user.strip():
        raise _Bad("empty instruction", "the instruction (and input) has no text")
    messages = []
    history = _maybe_json_list(_get(row, cols, "history", required=False, fix=fix))
    if history is not None:
        name = cols.name("history")
        if not isinstance(history, list) or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in history
        ):
            raise _Bad(f"field '{name}' is not a list of [user, assistant] pairs", f'expected [["question", "answer"], ...], got {_type_name(history)}', name)
        for q, a in history:
            messages += [Message("user", q), Message("assistant", a)]
    messages.append(Message("user", user))
    if output is not None:
        messages.append(Message("assistant", output))
    return Conversation.chat(_with_system(_check_chat(messages, require_answer), system))


def _chat(fmt: str) -> Callable[[dict, _Columns, bool], Conversation]:
    own, other = ("conversations", "messages") if fmt == "sharegpt" else ("messages", "conversations")

    def read(row: dict, cols: _Columns, require_answer: bool) -> Conversation:
        # An explicit mapping wins; otherwise the layout's own name, else the other chat layout's.
        canonical = next((c for c in (own, other) if c in cols.mapping), None)
        if canonical is None:
            canonical = own if row.get(own) is not None or row.get(other) is None else other
        name = cols.name(canonical)
        value = row.get(name)
        if value is None:
            raise _Bad(f"missing field '{name}'", f"{fmt} rows hold their messages in '{name}' (map another column with columns: {{{own}: ...}})", name)
        messages = _check_chat(_messages(value, cols, name, fmt), require_answer)
        system = _str(row, cols, "system", required=False, fix="the system column must hold a string")
        return Conversation.chat(_with_system(messages, system), tools=read_tools(row, cols))

    return read


def _prompt_completion(row: dict, cols: _Columns, require_answer: bool) -> Conversation:
    fix = "prompt/completion rows are two strings, or two lists of messages"
    p_name, c_name = cols.name("prompt"), cols.name("completion")
    prompt = _maybe_json_list(_get(row, cols, "prompt", required=True, fix=fix))
    completion = _maybe_json_list(_get(row, cols, "completion", required=require_answer, fix=fix))
    if isinstance(prompt, str):
        if completion is not None and not isinstance(completion, str):
            raise _Bad(f"field '{c_name}' is not a string", f"'{p_name}' is a string, so '{c_name}' must be one too (got {_type_name(completion)})", c_name)
        if require_answer and not completion.strip():
            raise _Bad("empty answer", f"'{c_name}' has no text")
        return Conversation.completion(prompt, completion or "")
    if not isinstance(prompt, list):
        raise _Bad(f"field '{p_name}' is not a string or a list of messages", f"got {_type_name(prompt)}", p_name)
    if completion is not None and not isinstance(completion, list):
        raise _Bad(f"field '{c_name}' is not a list of messages", f"'{p_name}' is a list of messages, so '{c_name}' must be one too (got {_type_name(completion)})", c_name)
    # Prompt-side assistant turns are context, never trained; completion-side ones are the answer.
    messages = [dataclasses.replace(m, trainable=False if m.role == "assistant" else None) for m in _messages(prompt, cols, p_name, "messages")]
    answer = _messages(completion or [], cols, c_name, "messages")
    if require_answer and not answer:
        raise _Bad("empty answer", f"'{c_name}' has no messages")
    messages += [dataclasses.replace(m, trainable=(m.trainable is not False) if m.role == "assistant" else None) for m in answer]
    return Conversation.chat(_check_chat(messages, require_answer), tools=read_tools(row, cols))


def _text(row: dict, cols: _Columns, require_answer: bool) -> Conversation:
    text = _str(row, cols, "text", required=True, fix='text rows are {"text": ...}')
    if not text.strip():
        raise _Bad("empty text", "the text has no characters to train on")
    return Conversation.text(text)


PARSERS: dict[str, Callable[[dict, _Columns, bool], Conversation]] = {
    "alpaca": _alpaca,
    "sharegpt": _chat("sharegpt"),
    "messages": _chat("messages"),
    "prompt_completion": _prompt_completion,
    "text": _text,
}


# ---- detection and the entry point ---------------------------------------------------------------
def detect_format(columns: list[str], where: str, mapping: dict[str, str] | None = None) -> str:
    """The layout whose identifying column is present (after ``mapping``, see ``DataSource.columns``).

    >>> detect_format(["instruction", "input", "output"], "a.json")
    'alpaca'
    >>> detect_format(["dialog"], "a.json", {"conversations": "dialog"})
    'sharegpt'
    >>> detect_format(["messages", "text"], "a.json")
    Traceback (most recent call last):
    ...
    sftune.data.report.DataError: a.json: ambiguous format: the columns fit messages (column 'messages'), text (column 'text')
      fix: pass --format messages or --format text (or `format:` for this data source)
    """
    cols = mapping if isinstance(mapping, _Columns) else _Columns(mapping, where)
    found = [f for f in FORMATS if cols.present(FORMAT_KEYS[f], columns)]
    if len(found) == 1:
        return found[0]
    if found:
        raise DataError(
            "ambiguous format: the columns fit " + ", ".join(f"{f} (column '{cols.name(FORMAT_KEYS[f])}')" for f in found),
            where,
            fix="pass " + " or ".join(f"--format {f}" for f in found) + " (or `format:` for this data source)",
        )
    layouts = "; ".join(f"{f}: '{FORMAT_KEYS[f]}'" for f in FORMATS)
    raise DataError(
        f"unknown format: columns are {', '.join(repr(c) for c in columns) or '(none)'}",
        where,
        fix=f"known layouts and the column that identifies them: {layouts}. Rename the columns, map them "
        "(columns: {instruction: my_question, output: my_answer}), or pass --format",
    )


def read_conversations(
    source: DataSource | str,
    report: DataReport,
    *,
    default_format: str = "auto",
    system_prompt: str | None = None,
    require_answer: bool = True,
) -> list[Conversation]:
    """Read one data source into a list of conversations: :func:`iter_conversations`, all at once."""
    return list(iter_conversations(source, report, default_format=default_format, system_prompt=system_prompt, require_answer=require_answer))


def iter_conversations(
    source: DataSource | str,
    report: DataReport,
    *,
    default_format: str = "auto",
    system_prompt: str | None = None,
    require_answer: bool = True,
    span: Span | None = None,
    rows: Iterator | None = None,
) -> Iterator[Conversation]:
    """Read one data source into conversations, lazily and in input order; bad rows go to ``report``.

    ``source.format`` (else ``default_format``) picks the layout; ``auto`` detects it from the
    first row's columns. ``system_prompt`` becomes the first message of chat conversations that
    have no system message. ``require_answer=False`` accepts prompt-only rows (for generation).

    Every row read is counted with ``report.seen()``; bad rows go to ``report.handle`` (which
    raises in strict mode). ``report.kept`` is left to the caller, which keeps fewer rows after
    tokenising. ``span`` reads one slice of a ``.jsonl`` file (see
    :func:`~sftune.data.json_rows.jsonl_spans`); with ``format`` ``auto`` the slice's own first
    row decides, so a caller splitting a file detects the format once and passes it in ``source``.
    ``rows`` replaces the source's own ``(Source, row)`` pairs (:func:`iter_rows`), e.g. a hub
    dataset read with ``streaming=True`` (see :mod:`sftune.data.streaming`).
    """
    if isinstance(source, str):
        source = DataSource(path=source)
    fmt = source.format if source.format != "auto" else default_format
    if fmt != "auto" and fmt not in PARSERS:
        raise DataError(f"unknown format '{fmt}'", source.path, fix=f"use one of: auto, {', '.join(FORMATS)}")
    cols = _Columns(source.columns, source.path)
    parse = PARSERS.get(fmt)
    for src, row in iter_rows(source.path, source.split, span) if rows is None else rows:
        report.seen()
        if isinstance(row, DataError):
            report.handle(row)
            continue
        if parse is None:  # format "auto": the first row that is an object decides
            fmt = detect_format(list(row), source.path, cols)
            parse = PARSERS[fmt]
        try:
            conv = parse(row, cols, require_answer)
        except _Bad as bad:
            report.handle(bad.at(src))
            continue
        conv.source = src
        if system_prompt and conv.kind == "chat":
            conv.messages = _with_system(conv.messages, system_prompt)
        if conv.tools:
            _check_call_names(conv, report)
        yield conv


def _check_call_names(conv: Conversation, report: DataReport) -> None:
    """A call naming a tool absent from the row's ``tools`` is kept but counted (it may be a
    deliberate hallucination example, or a typo in the data); ``--strict`` rejects it."""
    known = tool_names(conv.tools)
    for m in conv.messages:
        for call in m.tool_calls or ():
            name = call["function"]["name"]
            if name not in known:
                report.warn(
                    "tool call names a tool absent from 'tools'",
                    conv.source,
                    fix=f"the call '{name}' is not one of {sorted(known)}; fix the name or add its schema to 'tools'",
                )
                return
