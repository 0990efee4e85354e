"""How a chat template writes tool calls and reasoning, so generated text can be read back.

A :class:`ToolFormat` is a small typed spec: the markers around a call, the JSON keys that hold
the function's name and arguments, and the markers around reasoning. Four are built in (the
layouts the common model families generate); any other template's format is declared in the
config with the same keys, e.g. in YAML::

    tool_format:
      call_start: "<function_call>"
      call_end: "</function_call>"
      arguments_keys: [args]

or chosen automatically from the chat template's own text (:func:`detect_format`).

>>> fmt = resolve_format("auto", "...{{ '<tool_call>\\n' + tool_call | tojson }}...")
>>> fmt.name, fmt.call_start, fmt.call_end
('hermes', '<tool_call>', '</tool_call>')
>>> parse_calls('{"name": "get_weather", "arguments": {"city": "Paris"}}', fmt)
[('get_weather', {'city': 'Paris'}, None)]
"""

from __future__ import annotations

import json
import re
import secrets
import string

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator


class ToolFormatError(ValueError):
    """A tool format that cannot be used as declared, with the fix."""


class ToolFormat(BaseModel):
    """Where calls and reasoning sit in generated text. Every marker is matched literally."""

    # use_attribute_docstrings: each field's docstring is its description, as in sftune.config.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    name: str = "custom"
    """A label for messages and logs."""
    call_start: str | None = None
    """Text that opens a tool call ('<tool_call>'); none: calls only as bare JSON (bare_json)."""
    call_end: str | None = None
    """Text that closes a call ('</tool_call>'); none: the call's JSON runs to the end of the text ('[TOOL_CALLS]')."""
    call_separator: str = ""
    """What the template writes between call_start and the JSON ('\\n' for Hermes); used to force a call."""
    array: bool = False
    """The template writes the calls as one JSON list after call_start (Mistral); used to force a call."""
    bare_json: bool = False
    """A reply that is nothing but call JSON is a call too (Llama 3.1 without <|python_tag|>; a marker that decoding dropped as a special token)."""
    force_bare: bool = False
    """Force a call (tool_choice) as bare JSON, not after call_start (Llama 3.1: <|python_tag|> is for its built-in tools)."""
    name_key: str = "name"
    """JSON key of the function name."""
    arguments_keys: tuple[str, ...] = ("arguments", "parameters")
    """JSON keys that may hold the arguments; the first is the one written when forcing a call."""
    reasoning_start: str | None = None
    """Text that opens reasoning ('<think>'); none: the format has no reasoning."""
    reasoning_end: str | None = None
    """Text that closes reasoning ('</think>')."""

    @model_validator(mode="after")
    def _consistent(self):
        if (self.reasoning_start is None) != (self.reasoning_end is None):
            raise ValueError("reasoning_start and reasoning_end go together: set both or neither")
        if self.call_end is not None and self.call_start is None:
            raise ValueError("call_end is set but call_start is not: set the text that opens a call too")
        if not self.arguments_keys:
            raise ValueError("arguments_keys needs at least one key, e.g. ['arguments']")
        markers = [m for m in (self.call_start, self.call_end, self.reasoning_start, self.reasoning_end) if m is not None]
        if any(not m for m in markers):
            raise ValueError("a marker may not be the empty string: leave it unset instead")
        return self

    @property
    def has_calls(self) -> bool:
        return self.call_start is not None or self.bare_json

    def without_calls(self) -> "ToolFormat":
        """The same format reading only reasoning (``tool_choice: none``: calls stay text).

        >>> BUILTIN_FORMATS["qwen3"].without_calls().has_calls
        False
        """
        return self.model_copy(update={"call_start": None, "call_end": None, "bare_json": False})


_THINK = {"reasoning_start": "<think>", "reasoning_end": "</think>"}

#: The built-in formats: Hermes/Qwen ``<tool_call>`` JSON blocks (Qwen3 adds ``<think>`` reasoning; the
#: Hermes one reads it too since Hermes-3 style reasoning models use the same tags), Llama 3.1 JSON
#: (``{"name", "parameters"}`` as the whole reply, optionally after ``<|python_tag|>``), Mistral
#: ``[TOOL_CALLS][{...}, ...]``, and ``think`` for templates with reasoning but no tool calls.
BUILTIN_FORMATS: dict[str, ToolFormat] = {
    "hermes": ToolFormat(name="hermes", call_start="<tool_call>", call_end="</tool_call>", call_separator="\n", **_THINK),
    "qwen3": ToolFormat(name="qwen3", call_start="<tool_call>", call_end="</tool_call>", call_separator="\n", **_THINK),
    "llama3": ToolFormat(name="llama3", call_start="<|python_tag|>", bare_json=True, force_bare=True, arguments_keys=("parameters", "arguments")),
    # [TOOL_CALLS] is a special token in Mistral's tokenizers, so decoding may drop it: read a bare list too.
    "mistral": ToolFormat(name="mistral", call_start="[TOOL_CALLS]", array=True, bare_json=True),
    "think": ToolFormat(name="think", **_THINK),
}
_ALIASES = {"qwen": "qwen3", "qwen2.5": "hermes", "llama3.1": "llama3", "llama-3": "llama3", "llama": "llama3", "r1": "think"}


def detect_format(template: str | None) -> ToolFormat | None:
    """The built-in format a chat template writes, read from the template's text; ``None`` if none fits.

    >>> detect_format("{{ '<tool_call>\\n' }}{{ '<think>\\n' }}").name
    'qwen3'
    >>> detect_format("{{ '[TOOL_CALLS]' + tool_calls | tojson }}").name
    'mistral'
    >>> detect_format("{{ '<|im_start|>' + message['content'] }}") is None
    True
    """
    if not template:
        return None
    if "<tool_call>" in template:
        return BUILTIN_FORMATS["qwen3" if "<think>" in template else "hermes"]
    if "[TOOL_CALLS]" in template:
        return BUILTIN_FORMATS["mistral"]
    # Llama 3.1/3.2/3.3: built-in tools answer after <|python_tag|>, JSON calls as {"name", "parameters"}.
    if "<|python_tag|>" in template or ("<|start_header_id|>" in template and '"parameters": ' in template):
        return BUILTIN_FORMATS["llama3"]
    if "<think>" in template:
        return BUILTIN_FORMATS["think"]
    return None


def resolve_format(spec, template: str | None = None) -> ToolFormat | None:
    """The format to read generations with: ``spec`` as given in a config, or detected from ``template``.

    ``spec`` is ``None``/``"auto"`` (detect), ``"none"`` (no parsing), a built-in name, a mapping of
    :class:`ToolFormat` keys (a declared format), or a :class:`ToolFormat`.

    >>> resolve_format({"call_start": "<fn>", "call_end": "</fn>"}).call_end
    '</fn>'
    >>> resolve_format({"call_begin": "<fn>"})
    Traceback (most recent call last):
    ...
    sftune.infer.toolformat.ToolFormatError: invalid tool_format: 'call_begin': Extra inputs are not permitted; known keys: name, call_start, call_end, call_separator, array, bare_json, force_bare, name_key, arguments_keys, reasoning_start, reasoning_end
    """
    if isinstance(spec, ToolFormat):
        return spec
    if spec is None or spec == "auto":
        return detect_format(template)
    if isinstance(spec, str):
        key = _ALIASES.get(spec.lower(), spec.lower())
        if key == "none":
            return None
        if key in BUILTIN_FORMATS:
            return BUILTIN_FORMATS[key]
        raise ToolFormatError(f"unknown tool_format {spec!r}: use auto, none, one of {', '.join(BUILTIN_FORMATS)}, "
                              "or declare the markers as a mapping (call_start, call_end, reasoning_start, ...)")
    if isinstance(spec, dict):
        try:
            return ToolFormat(**spec)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            where = f"'{where}': " if where else ""
            raise ToolFormatError(f"invalid tool_format: {where}{first['msg'].removeprefix('Value error, ')}; "
                                  f"known keys: {', '.join(ToolFormat.model_fields)}") from None
    raise ToolFormatError(f"tool_format must be a name or a mapping, got {type(spec).__name__}")


# ---- the JSON of one call section -----------------------------------------------------------------
_ID_CHARS = string.ascii_letters + string.digits


def new_call_id() -> str:
    """A fresh OpenAI-style call id: ``call_`` and 24 random letters and digits."""
    return "call_" + "".join(secrets.choice(_ID_CHARS) for _ in range(24))


_BETWEEN = re.compile(r"[\s;,]*")  # what may separate several JSON calls in one section


def parse_calls(body: str, fmt: ToolFormat, *, bare: bool = False) -> list[tuple[str, dict, str | None]] | str:
    """The calls in one call section, as ``(name, arguments, id or None)``; or a reason it is not one.

    A section holds one JSON object or several (a list, or objects separated by whitespace, ``;``
    or ``,``). ``arguments`` may be an object or a JSON string of one. With ``bare`` (text that
    had no call marker) an object must hold the name and arguments keys and nothing else, so an
    answer that merely *is* JSON is not taken for a call.

    >>> fmt = BUILTIN_FORMATS["mistral"]
    >>> parse_calls('[{"name": "a", "arguments": {}}, {"name": "b", "arguments": "{\\\\"x\\\\": 1}"}]', fmt)
    [('a', {}, None), ('b', {'x': 1}, None)]
    >>> parse_calls('{"name": "a", "arguments": {"x": 1}', fmt)
    "not valid JSON: Expecting ',' delimiter at character 36"
    >>> parse_calls('{"city": "Paris"}', fmt)
    "a call needs a non-empty string 'name', got keys ['city']"
    """
    decoder = json.JSONDecoder()
    values, pos, text = [], 0, body.strip()
    while pos < len(text):
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            return f"not valid JSON: {e.msg} at character {e.pos + 1}"
        values.extend(value if isinstance(value, list) else [value])
        pos = _BETWEEN.match(text, pos).end()
    if not values:
        return "empty call"
    calls = []
    for v in values:
        if not isinstance(v, dict):
            return f"a call must be a JSON object, got {type(v).__name__}"
        if isinstance(v.get("function"), dict) and fmt.name_key not in v:  # OpenAI's own nesting
            v = {**v["function"], **({"id": v["id"]} if "id" in v else {})}
        name = v.get(fmt.name_key)
        if not isinstance(name, str) or not name:
            return f"a call needs a non-empty string {fmt.name_key!r}, got keys {sorted(v)}"
        key = next((k for k in fmt.arguments_keys if k in v), None)
        if bare and (key is None or set(v) - {fmt.name_key, key, "id"}):
            return f"bare JSON is a call only with {fmt.name_key!r}, one of {list(fmt.arguments_keys)} and at most an 'id'"
        args = v.get(key, {}) if key else {}
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError as e:
                return f"the arguments of {name!r} are a string that is not valid JSON: {e.msg}"
        if not isinstance(args, dict):
            return f"the arguments of {name!r} must be a JSON object, got {type(args).__name__}"
        call_id = v.get("id") if isinstance(v.get("id"), str) and v.get("id") else None
        calls.append((name, args, call_id))
    return calls
