"""Tool calls and tool schemas: one normal form for data, training and inference.

Data stores tool calls in several shapes; chat templates and the OpenAI API expect one. Readers
call :func:`normalize_tool_calls` and :func:`normalize_tools`; the tokenizer step and the
inference side (``sftune chat``/``serve``) both put calls in the template's :class:`CallForm`
right before ``apply_chat_template``, so a template sees a call exactly the same way in training
and at inference.

The normal form is OpenAI's: ``{"id"?, "type": "function", "function": {"name", "arguments"}}``,
with ``arguments`` kept as the data had it (a JSON string or an object) so ``to_dict`` round-trips.
Templates get ``arguments`` as a mapping, parsed from the JSON string, because that is what vLLM
(``_postprocess_messages`` in ``vllm/entrypoints/chat_utils.py``) and transformers' tool-use docs
hand to a template at inference: ``None`` or ``""`` becomes ``{}``, a string is ``json.loads``-ed.
Some templates want otherwise (JSON text, ``""`` for a null content, ids on every call): each is
probed once for its :class:`CallForm` (:func:`template_call_form`), which training and inference share.

>>> calls = normalize_tool_calls([{"name": "weather", "arguments": '{"city": "Paris"}'}])
>>> calls
[{'type': 'function', 'function': {'name': 'weather', 'arguments': '{"city": "Paris"}'}}]
>>> tool_calls_for_template(calls)
[{'type': 'function', 'function': {'name': 'weather', 'arguments': {'city': 'Paris'}}}]
>>> normalize_tools('[{"name": "weather", "parameters": {"type": "object"}}]')
[{'type': 'function', 'function': {'name': 'weather', 'parameters': {'type': 'object'}}}]
"""

from __future__ import annotations

import json
from dataclasses import dataclass


class ToolCallError(ValueError):
    """Tool calls or tool schemas that cannot be used. ``reason`` is a stable report key."""

    def __init__(self, reason: str, fix: str):
        super().__init__(f"{reason} ({fix})")
        self.reason, self.fix = reason, fix


def _kind(v) -> str:
    return "null" if v is None else {dict: "an object", list: "a list", str: "a string"}.get(type(v), f"a {type(v).__name__}")


def parse_arguments(arguments):
    """A call's arguments as the template gets them (vLLM's rule): ``None``/``""`` -> ``{}``,
    a JSON string -> its value, an object or a list as it is.

    >>> parse_arguments('{"x": 1}'), parse_arguments(None), parse_arguments({"y": 2})
    ({'x': 1}, {}, {'y': 2})
    """
    if not arguments:
        return {}
    if isinstance(arguments, str):
        return json.loads(arguments)
    return arguments


def normalize_tool_call(call) -> dict:
    """One call, in OpenAI form. Accepts OpenAI's ``{"type", "function": {...}, "id"?}`` and the
    flat ``{"name", "arguments"}`` (or ``"parameters"``) that many datasets use.

    Raises :class:`ToolCallError` for a call without a name, and for arguments that are not a
    JSON object (or a string holding one): a template could not render them, and a model must
    never be trained to write them.

    >>> normalize_tool_call({"id": "c1", "type": "function", "function": {"name": "f", "arguments": {}}})
    {'id': 'c1', 'type': 'function', 'function': {'name': 'f', 'arguments': {}}}
    >>> normalize_tool_call({"name": "f", "arguments": "{oops"})
    Traceback (most recent call last):
    ...
    sftune.data.toolcalls.ToolCallError: tool call arguments are not valid JSON (call 'f': Expecting property name enclosed in double quotes at char 1)
    """
    if not isinstance(call, dict):
        raise ToolCallError("tool call is not an object", f"got {_kind(call)}; a call is {{\"type\": \"function\", \"function\": {{\"name\", \"arguments\"}}}}")
    fn = call.get("function") if isinstance(call.get("function"), dict) else call
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise ToolCallError("tool call has no function name", "every call needs function.name (a non-empty string)")
    if "arguments" in fn:
        arguments = fn["arguments"]
    else:
        arguments = fn.get("parameters")  # Llama-style {"name", "parameters"}
    try:
        parsed = parse_arguments(arguments)
    except (json.JSONDecodeError, TypeError) as e:
        raise ToolCallError("tool call arguments are not valid JSON", f"call '{name}': {getattr(e, 'msg', e)} at char {getattr(e, 'pos', '?')}") from None
    if not isinstance(parsed, dict):
        raise ToolCallError("tool call arguments are not a JSON object", f"call '{name}': got {_kind(parsed)}; arguments map parameter names to values")
    out: dict = {}
    if call.get("id") is not None:
        out["id"] = call["id"]
    out["type"] = "function"
    out["function"] = {"name": name, "arguments": {} if arguments is None else arguments}
    return out


def _json_list(value, what: str, hint: str):
    """``value`` decoded when it is JSON text, and a single object wrapped in a list (datasets store both)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ToolCallError(f"{what} are not valid JSON", f"{e.msg} at char {e.pos}{hint}") from None
    return [value] if isinstance(value, dict) else value


def normalize_tool_calls(value) -> list[dict]:
    """A message's calls (a list, one call object, or a JSON string of either) in OpenAI form."""
    value = _json_list(value, "tool calls", "")
    if not isinstance(value, list):
        raise ToolCallError("tool calls are not a list", f"got {_kind(value)}")
    return [normalize_tool_call(c) for c in value]


def tool_calls_for_template(tool_calls: list[dict] | None, arguments: str = "object") -> list[dict] | None:
    """Copies of ``tool_calls`` with ``function.arguments`` as the template takes them: what a
    chat template gets, in training (``Conversation.to_messages``) and at inference alike. An
    empty list becomes ``None`` (vLLM drops it "to keep templates on the normal assistant path").

    ``arguments`` (:class:`CallForm` ``.arguments`` of the template): ``"object"``, a mapping (vLLM's and
    transformers' convention); ``"string"``, JSON text (the data's own string, else compact JSON),
    for the templates that write ``function.arguments`` out as it is.

    >>> calls = [{"type": "function", "function": {"name": "f", "arguments": {"a": "é"}}}]
    >>> tool_calls_for_template(calls, "string")[0]["function"]["arguments"]
    '{"a": "é"}'
    """
    if not tool_calls:
        return None
    out = []
    for call in tool_calls:
        fn = call.get("function", {})
        args = fn.get("arguments")
        if arguments == "string":
            args = args if isinstance(args, str) and args.strip() else json.dumps(parse_arguments(args), ensure_ascii=False)
        else:
            args = parse_arguments(args)
        out.append({**call, "function": {**fn, "arguments": args}})
    return out


_PROBE_KEY, _PROBE_VALUE = "sftune_probe_key", "sftune probe value"


@dataclass(frozen=True)
class CallForm:
    """How one chat template takes an assistant turn's tool calls (:func:`template_call_form`).

    ``arguments``: ``"object"`` (a mapping: vLLM's and transformers' convention) or ``"string"``
    (JSON text, for templates that write ``function.arguments`` out as it is). ``null_content``:
    what the ``null`` content of a turn that only calls tools becomes: ``None`` (left out, as
    transformers leaves out every ``None`` key) or ``""``, for templates that test
    ``content is none`` and then fail on the missing key (vLLM's DeepSeek ones). ``ids``: the
    template refuses calls without an ``id`` (Mistral's, which write it for the model to
    generate): calls the data left without one get a stable 9-character id, and a tool result
    without ``tool_call_id`` the id of the call it answers, in order (:func:`with_call_ids`).
    """

    arguments: str = "object"
    null_content: str | None = None
    ids: bool = False

    def message(self, m: dict) -> dict:
        """One template message (a dict) in this form: its calls' arguments as this template takes
        them, and ``null_content`` for the null content of a turn that makes calls. An empty list
        of calls is left out, as vLLM does ("to keep templates on the normal assistant path")."""
        if "tool_calls" not in m:
            return m
        m = dict(m)
        calls = tool_calls_for_template(m["tool_calls"], self.arguments)
        if calls is None:
            del m["tool_calls"]
        else:
            m["tool_calls"] = calls
            if m.get("content") is None and self.null_content is not None:
                m["content"] = self.null_content
        return m

    def messages(self, messages: list[dict]) -> list[dict]:
        """Template messages (dicts, as :func:`tool_calls_for_template` makes them) in this form.

        >>> CallForm("string", "").messages([{"role": "assistant", "content": None, "tool_calls": [
        ...     {"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}])
        [{'role': 'assistant', 'content': '', 'tool_calls': [{'type': 'function', 'function': {'name': 'f', 'arguments': '{"a": 1}'}}]}]
        """
        if self == OBJECT_FORM:
            return messages
        out = [self.message(m) for m in messages]
        return with_call_ids(out, "") if self.ids else out


def with_call_ids(messages: list[dict], key: str) -> list[dict]:
    """``messages`` (template dicts, changed in place and returned) with an ``id`` on every call and
    a ``tool_call_id`` on every tool result: a missing id is 9 hex characters from ``key`` (the
    conversation's file:line) and the call's place, so every rendering of a row agrees; a tool
    result without one answers the next unanswered call of the turn before it.

    >>> msgs = [{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}, {"id": "given_id1", "function": {"name": "g"}}]},
    ...         {"role": "tool", "content": "1"}, {"role": "tool", "content": "2"}]
    >>> [c["id"] for c in with_call_ids(msgs, "a.jsonl:3")[0]["tool_calls"]], [m["tool_call_id"] for m in msgs[1:]]
    (['279bfc531', 'given_id1'], ['279bfc531', 'given_id1'])
    """
    import hashlib

    pending: list[str] = []
    for k, m in enumerate(messages):
        if m.get("tool_calls"):
            calls = []
            for j, call in enumerate(m["tool_calls"]):
                if not call.get("id"):
                    call = {"id": hashlib.blake2b(f"{key}|{k}|{j}".encode(), digest_size=8).hexdigest()[:9], **call}
                calls.append(call)
            m["tool_calls"], pending = calls, [c["id"] for c in calls]
        elif m.get("role") == "tool" and pending:
            tid = m.get("tool_call_id")
            if not tid:
                m["tool_call_id"] = tid = pending[0]
            if tid in pending:
                pending.remove(tid)
    return messages


OBJECT_FORM = CallForm()


def _probe_messages(arguments, content=None, ids: bool = True) -> list[dict]:
    call = {"type": "function", "function": {"name": "sftune_probe", "arguments": arguments}}
    result = {"role": "tool", "name": "sftune_probe", "content": "r"}
    if ids:  # 9 characters, as Mistral's templates require
        call, result = {"id": "a1b2c3d4e", **call}, {**result, "tool_call_id": "a1b2c3d4e"}
    return [{"role": "user", "content": "q"}, {"role": "assistant", "content": content, "tool_calls": [call]}, result,
            {"role": "assistant", "content": "a"}]


def call_form(render_messages) -> CallForm:
    """The :class:`CallForm` a template takes, found by rendering a probe call.

    ``render_messages(messages)`` renders a message list with the template (and a probe tool in
    ``tools``). The call is rendered with both forms of arguments. A form is right when the
    rendering holds the arguments as JSON: not Python's repr of a dict (``{'key': ...}``: a
    template that prints the mapping as it is, e.g. vLLM's internlm2 and phi4-mini ones) and not
    JSON encoded twice (``"{\\"key\\": ...}"``: a template that ``tojson``s a string). The object
    form, what vLLM and transformers pass, is kept unless it is wrong and the string form is
    right (also when the template raises on a mapping, as vLLM's Apertus one does). Then a
    call-only turn with ``null`` content: left out unless the template raises on that and renders
    ``""``. Then calls without ids: given ids when the template raises without them only. A
    template that cannot render the probe at all (no tool support) gets the defaults.

    >>> def prints_as_is(msgs):  # a template writing {{ tool_call.function.arguments }}
    ...     return str(msgs[1]["tool_calls"][0]["function"]["arguments"])
    >>> call_form(prints_as_is), call_form(lambda msgs: json.dumps(msgs[1]["tool_calls"][0]["function"]["arguments"]))
    (CallForm(arguments='string', null_content=None, ids=False), CallForm(arguments='object', null_content=None, ids=False))
    >>> call_form(lambda msgs: msgs[1]["content"] + msgs[1]["tool_calls"][0]["id"])
    CallForm(arguments='object', null_content='', ids=True)
    """
    def rendering(arguments, content="", ids=True):
        try:
            return render_messages(_probe_messages(arguments, content, ids))
        except Exception:  # noqa: BLE001 - the template refuses this form
            return None

    def right(text) -> bool:
        return text is not None and f"'{_PROBE_KEY}':" not in text and f'\\"{_PROBE_KEY}' not in text

    as_object = {_PROBE_KEY: _PROBE_VALUE}
    arguments = "object"
    if not right(rendering(as_object)) and right(rendering(json.dumps(as_object))):
        arguments = "string"
    probe = as_object if arguments == "object" else json.dumps(as_object)
    null_content = "" if rendering(probe, None) is None and rendering(probe, "") is not None else None
    content = "" if null_content is not None else None
    ids = rendering(probe, content, ids=False) is None and rendering(probe, content) is not None
    return CallForm(arguments, null_content, ids)


_FORMS: dict = {}  # template_call_form's cache
_PROBE_TOOLS = [{"type": "function", "function": {"name": "sftune_probe", "description": "probe", "parameters": {
    "type": "object", "properties": {_PROBE_KEY: {"type": "string", "description": "probe"}}, "required": [_PROBE_KEY]}}}]


def template_call_form(tokenizer, template: str | None, template_kwargs: dict | None = None) -> CallForm:
    """:func:`call_form` of ``template`` (default: the tokenizer's own) rendered as training and
    inference render it (``apply_chat_template`` with ``template_kwargs``). Cached per template,
    variables and special tokens (all a rendering depends on)."""
    template = template if template is not None else getattr(tokenizer, "chat_template", None)
    if not template or not isinstance(template, str):
        return OBJECT_FORM
    key = (template, json.dumps([template_kwargs or {}, tokenizer.special_tokens_map], sort_keys=True, default=str))
    if key not in _FORMS:
        def render_messages(msgs):
            return tokenizer.apply_chat_template(msgs, chat_template=template, tools=_PROBE_TOOLS, tokenize=False,
                                                 **(template_kwargs or {}))
        _FORMS[key] = call_form(render_messages)
    return _FORMS[key]


def normalize_tools(value) -> list[dict]:
    """A conversation's tool schemas: a list of objects (or a JSON string of one), each in OpenAI
    form ``{"type": "function", "function": {"name", "description"?, "parameters"?}}``. A bare
    function schema ``{"name", ...}`` is wrapped, so training renders the tools the way an OpenAI
    request renders them at inference."""
    if isinstance(value, str) and not value.strip():
        return []
    value = _json_list(value, "tools", "; give a list of JSON schemas")
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        bad = value if not isinstance(value, list) else next(t for t in value if not isinstance(t, dict))
        raise ToolCallError("tools are not a list of objects", f"found {_kind(bad)}; give [{{\"type\": \"function\", \"function\": {{\"name\": ..., \"parameters\": ...}}}}, ...]")
    out = []
    for t in value:
        fn = t.get("function") if isinstance(t.get("function"), dict) else None
        if fn is None and isinstance(t.get("name"), str):
            t = {"type": "function", "function": t}
            fn = t["function"]
        if fn is None or not isinstance(fn.get("name"), str):
            raise ToolCallError("tool schema has no function name", "each tool is {\"type\": \"function\", \"function\": {\"name\": ..., \"parameters\": ...}}")
        out.append(t)
    return out


def tool_names(tools: list[dict]) -> set[str]:
    """Names of the functions in normalised ``tools``."""
    return {t["function"]["name"] for t in tools}
