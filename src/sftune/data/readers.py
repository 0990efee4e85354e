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
                                           ``system``, ``tool``/``function``/``observation``
``messages``           ``messages``        list of ``{"role", "content", "weight"?}`` (OpenAI /
                                           Hugging Face); ``weight: 0`` = do not train this turn
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

import difflib
import json
from collections.abc import Callable

from ..config import DataSource
from .conversation import Conversation, Message, Source
from .files import iter_rows
from .report import DataError, DataReport

FORMATS = ("alpaca", "sharegpt", "messages", "prompt_completion", "text")

#: The column whose presence identifies each layout.
FORMAT_KEYS = {
    "alpaca": "instruction",
    "sharegpt": "conversations",
    "messages": "messages",
    "prompt_completion": "prompt",
    "text": "text",
}

#: Keys allowed in ``DataSource.columns``, with what each maps.
COLUMN_KEYS = {
    # row-level columns
    "instruction": "alpaca: the instruction column",
    "input": "alpaca: the optional input column (appended to the instruction after a blank line)",
    "output": "alpaca: the answer column",
    "system": "alpaca, sharegpt, messages: an optional column with a system prompt for the row",
    "history": "alpaca: the optional column of earlier [user, assistant] pairs",
    "conversations": "sharegpt/messages: the column holding the list of messages",
    "messages": "sharegpt/messages: the column holding the list of messages",
    "prompt": "prompt_completion: the prompt column",
    "completion": "prompt_completion: the completion column",
    "text": "text: the text column",
    # keys inside each message
    "role": "the key holding a message's role (default: role, or from)",
    "content": "the key holding a message's text (default: content, or value)",
    "weight": "the key holding a message's 0/1 training weight (default: weight)",
    # role tags: the file's tag for each canonical role (added to the known tags)
    "user": "the role tag used for user turns (e.g. Q)",
    "assistant": "the role tag used for assistant turns (e.g. A)",
    "system_tag": "the role tag used for system turns",
    "tool": "the role tag used for tool results",
}

#: Role tags understood without any mapping (compared case-insensitively).
ROLE_TAGS = {
    "system": "system",
    "developer": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "tool": "tool",
    "function": "tool",
    "observation": "tool",
    "ipython": "tool",
}


class _Bad(Exception):
    """A bad row, before its location is attached. ``reason`` is the report key, so it is stable."""

    def __init__(self, reason: str, fix: str | None = None, field: str | None = None):
        super().__init__(reason)
        self.reason, self.fix, self.field = reason, fix, field

    def at(self, src: Source) -> DataError:
        err = DataError(self.reason, src, fix=self.fix)
        err.field = self.field  # kept out of the message: the reason already names the field
        return err


def _type_name(v) -> str:
    return "null" if v is None else {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(type(v), f"a {type(v).__name__}")


class _Columns:
    """Resolves canonical names to the file's column names and role tags to canonical roles."""

    def __init__(self, mapping: dict[str, str] | None, where: str):
        mapping = dict(mapping or {})
        unknown = [k for k in mapping if k not in COLUMN_KEYS]
        if unknown:
            k = unknown[0]
            close = difflib.get_close_matches(k, list(COLUMN_KEYS), n=1, cutoff=0.6)
            raise DataError(
                f"unknown key '{k}' in columns",
                where,
                fix=(f"did you mean '{close[0]}'? " if close else "")
                + "columns maps canonical names onto your file's names; known keys: "
                + ", ".join(COLUMN_KEYS),
            )
        self.mapping = mapping
        self.tags = {k.lower(): v for k, v in ROLE_TAGS.items()}
        for key, role in (("user", "user"), ("assistant", "assistant"), ("system_tag", "system"), ("tool", "tool")):
            if key in mapping:  # a custom tag wins over a default one (e.g. a file whose "user" means the model)
                self.tags[mapping[key].lower()] = role
        order = ["system", "user", "assistant", "tool"]
        # Listed in error messages grouped by role, the canonical name first: "system, developer, user, human, ...".
        self.known_tags = sorted(self.tags, key=lambda t: (order.index(self.tags[t]), t != self.tags[t], t))

    def name(self, canonical: str) -> str:
        return self.mapping.get(canonical, canonical)

    def present(self, canonical: str, columns) -> bool:
        """Is the canonical column in ``columns`` (mapped, or by its own name and not claimed by another)?"""
        if canonical in self.mapping:
            return self.mapping[canonical] in columns
        claimed = set(self.mapping.values())
        return canonical in columns and canonical not in claimed

    def role(self, tag: str) -> str | None:
        return self.tags.get(tag.lower())


# ---- field access -----------------------------------------------------------------------------
def _get(row: dict, cols: _Columns, canonical: str, *, required: bool, fix: str) -> object | None:
    name = cols.name(canonical)
    value = row.get(name)
    if value is None and required:
        raise _Bad(f"missing field '{name}'", fix, name)
    return value


def _str(row: dict, cols: _Columns, canonical: str, *, required: bool, fix: str) -> str | None:
    value = _get(row, cols, canonical, required=required, fix=fix)
    if value is not None and not isinstance(value, str):
        name = cols.name(canonical)
        raise _Bad(f"field '{name}' is not a string", f"got {_type_name(value)}; {fix}", name)
    return value


def _maybe_json_list(value):
    # CSV cells hold strings; a list-valued column (messages, history) arrives JSON-encoded there.
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


# ---- one chat message list ---------------------------------------------------------------------
def _content(value, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # [{"type": "text", "text": ...}, ...] (OpenAI / HF multimodal style)
        parts = []
        for part in value:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text" or not isinstance(part.get("text"), str):
                raise _Bad(
                    f"unsupported content part '{kind if kind is not None else _type_name(part)}'",
                    f"{field} may be a string or a list of {{\"type\": \"text\", \"text\": ...}} parts; "
                    "images, audio and other parts are not supported for text-only training",
                    field,
                )
            parts.append(part["text"])
        return "\n".join(parts)
    raise _Bad(f"field '{field}' is not a string", f"got {_type_name(value)}; give the message text as a string", field)


def _first_present(m: dict, keys: list[str]):
    """The value of the first of ``keys`` that ``m`` holds (not None). Runs for every message of
    every row, so the usual case (the first key is there) costs one lookup."""
    v = m.get(keys[0])
    if v is not None:
        return v
    for k in keys[1:]:
        v = m.get(k)
        if v is not None:
            return v
    return None


def _messages(value, cols: _Columns, field: str, fmt: str) -> list[Message]:
    """Parse a list of message objects into :class:`Message` (roles mapped, weights applied)."""
    value = _maybe_json_list(value)
    if not isinstance(value, list):
        raise _Bad(f"field '{field}' is not a list of messages", f"got {_type_name(value)}; expected [{{\"role\": ..., \"content\": ...}}, ...]", field)
    sharegpt = fmt == "sharegpt"
    role_keys = [cols.mapping["role"]] if "role" in cols.mapping else (["from", "role"] if sharegpt else ["role", "from"])
    content_keys = [cols.mapping["content"]] if "content" in cols.mapping else (["value", "content"] if sharegpt else ["content", "value"])
    weight_key = cols.name("weight")
    out = []
    for m in value:
        if not isinstance(m, dict):
            raise _Bad(f"field '{field}' is not a list of messages", f"an element is {_type_name(m)}, not an object", field)
        tag = _first_present(m, role_keys)
        if tag is None:
            name = f"{field}[].{role_keys[0]}"
            raise _Bad(f"missing field '{name}'", f"every message needs '{role_keys[0]}' (or map the key with columns: {{role: ...}})", name)
        if not isinstance(tag, str):
            name = f"{field}[].{role_keys[0]}"
            raise _Bad(f"field '{name}' is not a string", f"got {_type_name(tag)}", name)
        role = cols.role(tag)
        if role is None:
            raise _Bad(
                f"unknown role '{tag}' (known: {', '.join(cols.known_tags)})",
                f"map it to a role with columns, e.g. {{assistant: {tag}}} or {{user: {tag}}}",
                f"{field}[].{role_keys[0]}",
            )
        raw = _first_present(m, content_keys)
        if raw is None:
            name = f"{field}[].{content_keys[0]}"
            raise _Bad(f"missing field '{name}'", f"every message needs '{content_keys[0]}' (or map the key with columns: {{content: ...}})", name)
        content = _content(raw, f"{field}[].{content_keys[0]}")
        weight = m.get(weight_key)
        trainable = None
        if weight is not None:
            if isinstance(weight, bool) or weight not in (0, 1):
                name = f"{field}[].{weight_key}"
                raise _Bad(f"field '{name}' is not 0 or 1", f"got {weight!r}; weight 0 excludes an assistant turn from training", name)
            trainable = False if weight == 0 else None
        out.append(Message(role, content, trainable))
    return out


def _check_chat(messages: list[Message], require_answer: bool) -> list[Message]:
    """The checks every chat conversation passes, whatever its layout."""
    if not messages:
        raise _Bad("empty conversation", "the message list has no messages")
    last = len(messages) - 1
    for i, m in enumerate(messages):
        if m.role == "assistant" and not m.content.strip():
            if i == last and not require_answer:
                messages = messages[:-1]  # a prompt with an empty answer slot: keep the prompt
                break
            raise _Bad("empty answer", "an assistant turn has no text; fill it in or remove the row")
    if not any(m.role == "user" for m in messages):
        raise _Bad("no user turn", "a conversation needs at least one user message before the answer")
    if require_answer and messages[-1].role != "assistant":
        raise _Bad(
            "conversation does not end with an assistant turn",
            f"the last message is '{messages[-1].role}'; add the assistant's answer or remove the trailing turns",
        )
    return messages


def _with_system(messages: list[Message], system: str | None) -> list[Message]:
    if system and system.strip() and not any(m.role == "system" for m in messages):
        return [Message("system", system), *messages]
    return messages


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
        return Conversation.chat(_with_system(messages, system))

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
    messages = [Message(m.role, m.content, False if m.role == "assistant" else None) for m in _messages(prompt, cols, p_name, "messages")]
    answer = _messages(completion or [], cols, c_name, "messages")
    if require_answer and not answer:
        raise _Bad("empty answer", f"'{c_name}' has no messages")
    messages += [Message(m.role, m.content, (m.trainable is not False) if m.role == "assistant" else None) for m in answer]
    return Conversation.chat(_check_chat(messages, require_answer))


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
    """Read one data source into conversations, in input order; bad rows go to ``report``.

    ``source.format`` (else ``default_format``) picks the layout; ``auto`` detects it from the
    first row's columns. ``system_prompt`` becomes the first message of chat conversations that
    have no system message. ``require_answer=False`` accepts prompt-only rows (for generation).

    Every row read is counted with ``report.seen()``; bad rows go to ``report.handle`` (which
    raises in strict mode). ``report.kept`` is left to the caller, which keeps fewer rows after
    tokenising.
    """
    if isinstance(source, str):
        source = DataSource(path=source)
    fmt = source.format if source.format != "auto" else default_format
    if fmt != "auto" and fmt not in PARSERS:
        raise DataError(f"unknown format '{fmt}'", source.path, fix=f"use one of: auto, {', '.join(FORMATS)}")
    cols = _Columns(source.columns, source.path)
    parse = PARSERS.get(fmt)
    out: list[Conversation] = []
    for src, row in iter_rows(source.path, source.split):
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
        out.append(conv)
    return out
