"""One raw row's fields and message list, read into :class:`Message` objects.

This is the message-level half of the readers (:mod:`sftune.data.readers` holds the layouts and
the entry point): the column mapping, role tags, message lists with their tool calls, tool
results and reasoning, and the checks every chat conversation passes.

Agent data, as the common datasets store it:

- OpenAI / Hugging Face messages: assistant ``tool_calls`` (arguments a JSON string or an
  object; the legacy single ``function_call`` too), ``content`` null or empty on a turn that only
  calls tools, ``tool`` messages with ``tool_call_id``/``name``, reasoning under
  ``reasoning_content``, ``reasoning`` or ``thinking``;
- ShareGPT function calling: ``from: function_call`` turns whose value is a JSON call
  ``{"name", "arguments"}`` (or a list of them) become the assistant's ``tool_calls`` (merged
  into the assistant text turn right before, if any: one generated turn), ``from: observation``
  turns become ``tool`` messages named after the call they answer;
- a row-level ``tools`` column (a list of JSON schemas, or a JSON string of one).

>>> cols = _Columns(None, "x")
>>> [m.to_dict() for m in _messages([{"from": "human", "value": "Weather?"},
...     {"from": "function_call", "value": '{"name": "weather", "arguments": {"city": "Oslo"}}'},
...     {"from": "observation", "value": "3 C"}], cols, "conversations", "sharegpt")][1:]
[{'role': 'assistant', 'content': '', 'tool_calls': [{'type': 'function', 'function': {'name': 'weather', 'arguments': {'city': 'Oslo'}}}]}, {'role': 'tool', 'content': '3 C', 'name': 'weather'}]
"""

from __future__ import annotations

import difflib
import json

from .conversation import Message, Source
from .report import DataError
from .toolcalls import ToolCallError, normalize_tool_calls, normalize_tools

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
    "tools": "sharegpt/messages: the optional column of tool schemas (a list, or a JSON string of one)",
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


#: Message keys read into :class:`Message` fields (any other key is kept in ``Message.extra``).
_TOOL_KEYS = ("tool_calls", "function_call", "tool_call_id", "name")
_REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")
#: ShareGPT tags of a turn whose value is a JSON tool call (LLaMA-Factory's function-calling layout).
CALL_TAGS = ("function_call", "tool_call", "tool_calls")


def _string_key(m: dict, key: str, field: str) -> str | None:
    v = m.get(key)
    if v is not None and not isinstance(v, str):
        raise _Bad(f"field '{field}[].{key}' is not a string", f"got {_type_name(v)}", f"{field}[].{key}")
    return v


def _calls(value, field: str) -> list[dict]:
    try:
        return normalize_tool_calls(value)
    except ToolCallError as e:
        raise _Bad(e.reason, e.fix, field) from None


def _messages(value, cols: _Columns, field: str, fmt: str) -> list[Message]:
    """Parse a list of message objects into :class:`Message` (roles mapped, weights applied,
    tool calls normalised, ShareGPT call/observation turns converted)."""
    value = _maybe_json_list(value)
    if not isinstance(value, list):
        raise _Bad(f"field '{field}' is not a list of messages", f"got {_type_name(value)}; expected [{{\"role\": ..., \"content\": ...}}, ...]", field)
    sharegpt = fmt == "sharegpt"
    role_keys = [cols.mapping["role"]] if "role" in cols.mapping else (["from", "role"] if sharegpt else ["role", "from"])
    content_keys = [cols.mapping["content"]] if "content" in cols.mapping else (["value", "content"] if sharegpt else ["content", "value"])
    weight_key = cols.name("weight")
    known = {*role_keys, *content_keys, weight_key, *_TOOL_KEYS, *_REASONING_KEYS, "role", "from", "content", "value", "trainable"}
    out: list[Message] = []
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
        raw = _first_present(m, content_keys)
        if tag.lower() in CALL_TAGS and cols.role(tag) is None:
            out.append(_sharegpt_call(raw, out, f"{field}[].{content_keys[0]}"))
            continue
        role = cols.role(tag)
        if role is None:
            raise _Bad(
                f"unknown role '{tag}' (known: {', '.join(cols.known_tags)})",
                f"map it to a role with columns, e.g. {{assistant: {tag}}} or {{user: {tag}}}",
                f"{field}[].{role_keys[0]}",
            )
        calls = None
        if role == "assistant":
            if m.get("tool_calls") is not None:
                calls = _calls(m["tool_calls"], f"{field}[].tool_calls")
            elif isinstance(m.get("function_call"), dict):  # OpenAI's legacy single call
                calls = _calls([m["function_call"]], f"{field}[].function_call")
        if raw is None and not calls:
            name = f"{field}[].{content_keys[0]}"
            raise _Bad(f"missing field '{name}'", f"every message needs '{content_keys[0]}' (or map the key with columns: {{content: ...}})", name)
        if role == "tool" and isinstance(raw, dict):  # a tool result stored as a JSON object: its text is that JSON
            raw = json.dumps(raw, ensure_ascii=False)
        content = "" if raw is None else _content(raw, f"{field}[].{content_keys[0]}")
        weight = m.get(weight_key)
        trainable = None
        if weight is not None:
            if isinstance(weight, bool) or weight not in (0, 1):
                name = f"{field}[].{weight_key}"
                raise _Bad(f"field '{name}' is not 0 or 1", f"got {weight!r}; weight 0 excludes an assistant turn from training", name)
            trainable = False if weight == 0 else None
        if isinstance(m.get("trainable"), bool):  # written by Conversation.to_dict (sftune curate)
            trainable = m["trainable"]
        msg = Message(role, content, trainable, content_null=raw is None)
        if calls is not None:
            msg.tool_calls = calls
        msg.tool_call_id = _string_key(m, "tool_call_id", field)
        msg.name = _string_key(m, "name", field)
        key = next((k for k in _REASONING_KEYS if m.get(k) is not None), None)
        if key is not None:
            msg.reasoning = _string_key(m, key, field)
        extra = {k: v for k, v in m.items() if k not in known and v is not None}
        msg.extra = extra or None
        if sharegpt and role == "tool" and msg.name is None:
            msg.name = _answered_call_name(out)
        out.append(msg)
    return out


def _sharegpt_call(raw, before: list[Message], field: str) -> Message:
    """A ShareGPT ``function_call`` turn: the assistant's call(s), merged into the assistant text
    turn right before it when there is one (text then calls is one generated turn)."""
    if raw is None:
        raise _Bad(f"missing field '{field}'", "a function_call turn holds its call as JSON {\"name\", \"arguments\"}", field)
    calls = _calls(raw, field)
    prev = before[-1] if before else None
    if prev is not None and prev.role == "assistant":
        before.pop()
        prev.tool_calls = (prev.tool_calls or []) + calls
        return prev
    return Message("assistant", "", tool_calls=calls)


def _answered_call_name(before: list[Message]) -> str | None:
    """The name of the call the next ShareGPT observation answers: the k-th observation after a
    call turn answers its k-th call."""
    k = 0
    for m in reversed(before):
        if m.role == "tool":
            k += 1
        elif m.role == "assistant" and m.tool_calls:
            return m.tool_calls[k]["function"]["name"] if k < len(m.tool_calls) else None
        else:
            return None
    return None


def read_tools(row: dict, cols: _Columns) -> list[dict] | None:
    """The row's ``tools`` column (a list of schemas or a JSON string of one), normalised."""
    name = cols.name("tools")
    value = row.get(name)
    if value is None:
        return None
    try:
        return normalize_tools(value) or None
    except ToolCallError as e:
        raise _Bad(e.reason, f"'{name}': {e.fix}", name) from None


def _check_tool_results(messages: list[Message]) -> None:
    """Every tool result answers a call made before it. In data with structured calls, the turn
    before a run of tool results must call tools (and a ``tool_call_id`` must name one of the
    calls made so far); in data that writes calls as text, an assistant turn must come first."""
    structured = any(m.tool_calls for m in messages)
    ids: set = set()
    last = None  # the last non-tool message
    for m in messages:
        if m.role == "tool":
            ok = last is not None and last.role == "assistant" and (bool(last.tool_calls) or not structured)
            if ok and m.tool_call_id is not None and ids:
                ok = m.tool_call_id in ids
            if not ok:
                raise _Bad(
                    "tool result with no call before it",
                    "a tool message must follow the assistant turn whose tool_calls it answers"
                    + (f" (tool_call_id '{m.tool_call_id}' matches no earlier call)" if m.tool_call_id is not None and ids else ""),
                )
            continue
        last = m
        ids.update(c["id"] for c in m.tool_calls or () if "id" in c)


def _check_chat(messages: list[Message], require_answer: bool) -> list[Message]:
    """The checks every chat conversation passes, whatever its layout."""
    if not messages:
        raise _Bad("empty conversation", "the message list has no messages")
    last = len(messages) - 1
    for i, m in enumerate(messages):
        if m.role == "assistant" and not m.content.strip() and not m.tool_calls:
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
    _check_tool_results(messages)
    return messages


def _with_system(messages: list[Message], system: str | None) -> list[Message]:
    if system and system.strip() and not any(m.role == "system" for m in messages):
        return [Message("system", system), *messages]
    return messages


