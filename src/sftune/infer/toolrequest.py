"""The request side of tool calling: OpenAI messages into template messages, and ``tool_choice``.

An OpenAI request carries assistant ``tool_calls`` whose ``arguments`` are JSON *strings*, and
``tool`` messages answering them by ``tool_call_id``. Chat templates expect the arguments as
objects (they ``tojson`` them), the same form training data is rendered in, so they are parsed
here; every other key is passed on exactly as given (a key the request lacks stays absent).

``tool_choice`` is honoured by what is rendered and by forcing the start of the reply:
``none`` renders no tools and reads no calls; ``auto`` renders them and lets the model choose;
``required`` starts the reply with the format's call marker; a named function starts it with
the call's JSON up to the arguments, so the model can only fill in the arguments.

>>> from sftune.infer.toolformat import BUILTIN_FORMATS
>>> tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
>>> req = prepare_tool_request(
...     [{"role": "user", "content": "Weather in Paris?"}], tools,
...     {"type": "function", "function": {"name": "get_weather"}}, BUILTIN_FORMATS["hermes"])
>>> req.prefix
'<tool_call>\\n{"name": "get_weather", "arguments": '
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ..data.toolcalls import template_call_form
from .toolcalls import ToolCallParser, parse_output, prompt_opens_reasoning
from .toolformat import ToolFormat

REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")  # the names datasets and APIs use


class ToolRequestError(ValueError):
    """A request the tool handling cannot serve; ``param`` names the field (for a 400 answer) in the
    server's dotted form, ``messages.2.tool_calls.0.function.arguments``."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = re.sub(r"\[(\d+)\]", r".\1", param) if param else param


def _text(content, where: str) -> str:
    """Content as text: a string, ``None`` (an assistant turn that only calls tools) or text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    raise ToolRequestError(f"{where}.content must be a string or a list of text parts", where + ".content")


def template_messages(messages: list[dict]) -> list[dict]:
    """OpenAI request messages as a chat template takes them (the form training renders).

    Assistant ``tool_calls`` get their ``arguments`` parsed into objects; ``developer`` becomes
    ``system``; ``null`` content stays ``None`` (as in training); ``reasoning``/``thinking`` become
    ``reasoning_content``. A ``tool`` message must answer a call made before it.

    >>> template_messages([
    ...     {"role": "user", "content": "Weather in Oslo?"},
    ...     {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
    ...      "function": {"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}}]},
    ...     {"role": "tool", "tool_call_id": "call_1", "content": "{\\"temp\\": 3}"}])[1:]
    [{'role': 'assistant', 'content': None, 'tool_calls': [{'id': 'call_1', 'type': 'function', 'function': {'name': 'get_weather', 'arguments': {'city': 'Oslo'}}}]}, {'role': 'tool', 'content': '{"temp": 3}', 'tool_call_id': 'call_1'}]
    """
    out, call_ids, calls_seen = [], set(), False
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or "role" not in m:
            raise ToolRequestError(f"{where} must be an object with a 'role'", where)
        role = "system" if m["role"] == "developer" else m["role"]
        if m.get("content") is None and not (role == "assistant" and m.get("tool_calls")):
            raise ToolRequestError(f"{where}.content is missing: only an assistant message that makes tool_calls may have null content",
                                   where + ".content")
        # null content stays None, as Conversation.to_messages hands a call-only turn to the
        # template in training (transformers then drops the key): same rendering both ways.
        msg = {"role": role, "content": None if m.get("content") is None else _text(m.get("content"), where)}
        if m.get("name") is not None:
            msg["name"] = m["name"]
        if role == "assistant":
            for key in REASONING_KEYS:
                if m.get(key) is not None:
                    msg["reasoning_content"] = m[key]
                    break
            if m.get("tool_calls"):
                msg["tool_calls"] = [_template_call(tc, f"{where}.tool_calls[{j}]") for j, tc in enumerate(m["tool_calls"])]
                call_ids.update(tc["id"] for tc in msg["tool_calls"] if tc.get("id"))
                calls_seen = True
        elif role == "tool":
            if not calls_seen:
                raise ToolRequestError(f"{where} is a tool result with no assistant tool_calls before it: "
                                       "send the assistant message that made the call first", where)
            tid = m.get("tool_call_id")
            if tid is not None:
                if call_ids and tid not in call_ids:
                    raise ToolRequestError(f"{where}.tool_call_id {tid!r} answers no call made before it "
                                           f"(ids so far: {', '.join(sorted(call_ids))})", where + ".tool_call_id")
                msg["tool_call_id"] = tid
        out.append(msg)
    return out


def _template_call(tc, where: str) -> dict:
    if not isinstance(tc, dict) or not isinstance(tc.get("function"), dict) or not tc["function"].get("name"):
        raise ToolRequestError(f"{where} must be {{'type': 'function', 'function': {{'name': ..., 'arguments': ...}}}}", where)
    fn = tc["function"]
    args = fn.get("arguments", {})
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as e:
            raise ToolRequestError(f"{where}.function.arguments is not valid JSON ({e.msg} at character {e.pos + 1}): "
                                   "send the arguments as a JSON object encoded as a string", where + ".function.arguments") from None
    if not isinstance(args, dict):
        raise ToolRequestError(f"{where}.function.arguments must encode a JSON object, got {type(args).__name__}",
                               where + ".function.arguments")
    call = {"type": tc.get("type", "function"), "function": {"name": fn["name"], "arguments": args}}
    return {"id": tc["id"], **call} if tc.get("id") else call


def tool_names(tools) -> list[str]:
    """The function names a ``tools`` list declares, checking its shape.

    >>> tool_names([{"type": "function", "function": {"name": "get_weather"}}])
    ['get_weather']
    """
    if not isinstance(tools, list):
        raise ToolRequestError("tools must be a list of {'type': 'function', 'function': {...}} objects", "tools")
    names = []
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise ToolRequestError(f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ..., 'parameters': ...}}}}", f"tools[{i}]")
        names.append(fn["name"])
    return names


def tool_choice_mode(choice, tools) -> tuple[str, str | None]:
    """``(mode, function name)`` for a request's ``tool_choice``; mode is none, auto, required or function.

    No ``tool_choice`` means ``auto`` with tools and ``none`` without, as in OpenAI's API.

    >>> tools = [{"type": "function", "function": {"name": "get_weather"}}]
    >>> tool_choice_mode(None, tools), tool_choice_mode(None, None), tool_choice_mode("required", tools)
    (('auto', None), ('none', None), ('required', None))
    >>> tool_choice_mode({"type": "function", "function": {"name": "get_time"}}, tools)
    Traceback (most recent call last):
    ...
    sftune.infer.toolrequest.ToolRequestError: tool_choice names the function 'get_time', which is not in tools (get_weather)
    """
    names = tool_names(tools) if tools else []
    if choice is None:
        return ("auto" if names else "none"), None
    if choice in ("none", "auto", "required"):
        if choice != "none" and not names:
            raise ToolRequestError(f"tool_choice is {choice!r} but the request has no tools: send tools, or drop tool_choice", "tool_choice")
        return choice, None
    fn = choice.get("function") if isinstance(choice, dict) and choice.get("type") == "function" else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise ToolRequestError("tool_choice must be 'none', 'auto', 'required' or "
                               "{'type': 'function', 'function': {'name': ...}}", "tool_choice")
    if fn["name"] not in names:
        listed = ", ".join(names) if names else "the request has no tools"
        raise ToolRequestError(f"tool_choice names the function {fn['name']!r}, which is not in tools ({listed})", "tool_choice")
    return "function", fn["name"]


def forced_prefix(fmt: ToolFormat | None, mode: str, name: str | None = None) -> str:
    """The text a reply is forced to start with for a tool_choice ``mode`` (appended to the prompt).

    >>> from sftune.infer.toolformat import BUILTIN_FORMATS as F
    >>> forced_prefix(F["hermes"], "required"), forced_prefix(F["hermes"], "auto")
    ('<tool_call>\\n', '')
    >>> forced_prefix(F["mistral"], "function", "get_weather")
    '[TOOL_CALLS][{"name": "get_weather", "arguments": '
    >>> forced_prefix(F["llama3"], "function", "get_weather")
    '{"name": "get_weather", "parameters": '
    """
    if mode in ("none", "auto"):
        return ""
    if fmt is None or not fmt.has_calls:
        raise ToolRequestError(f"tool_choice {mode!r} needs to know how this model writes a call, and its chat template "
                               "shows no known format: declare tool_format (call_start, call_end, ...) in the config", "tool_choice")
    bare = fmt.force_bare or fmt.call_start is None
    opener = "" if bare else fmt.call_start + fmt.call_separator + ("[" if fmt.array else "")
    if mode == "required":  # a bare call has no marker to force, so force its first key
        return opener + ('{"' + fmt.name_key + '": "' if bare else "")
    if mode != "function" or not name:
        raise ValueError(f"unknown tool_choice mode {mode!r} (or no function name)")
    return opener + "{" + json.dumps(fmt.name_key) + ": " + json.dumps(name, ensure_ascii=False) + ", " + json.dumps(fmt.arguments_keys[0]) + ": "


@dataclass
class ToolRequest:
    """What a chat request asks of the tool machinery, resolved once: render and parse with these."""

    messages: list[dict]
    """Template messages (:func:`template_messages`)."""
    tools: list[dict] | None
    """The tools to render (``None`` with ``tool_choice: none`` or no tools)."""
    mode: str
    """none, auto, required or function."""
    prefix: str
    """Text that starts the reply, from the declared format (:func:`start_reply` prefers the template's own layout)."""
    parse_format: ToolFormat | None
    """Format to read the reply with (calls not read under ``tool_choice: none``)."""
    function: str | None = None
    """The function a named tool_choice forces."""


def prepare_tool_request(messages: list[dict], tools, tool_choice, fmt: ToolFormat | None) -> ToolRequest:
    """Resolve one request's messages, tools and tool_choice against the model's tool format."""
    mode, name = tool_choice_mode(tool_choice, tools)
    rendered_tools = list(tools) if tools and mode != "none" else None
    parse = fmt.without_calls() if fmt is not None and mode == "none" else fmt
    return ToolRequest(template_messages(messages), rendered_tools, mode, forced_prefix(fmt, mode, name), parse, name)


_PROBE_NAME, _PROBE_ARG = "sftune_probe_fn", "sftune_probe_arg"


def probe_call_layout(tokenizer, fmt: ToolFormat | None, tools=None, **template_kwargs) -> tuple[str, str] | None:
    """How the chat template itself writes a call-only assistant turn: ``(text before the function
    name, text between the name and the arguments)``, or ``None`` when it cannot be read off.

    Rendering a probe call through the template gives the exact layout the model was trained on
    (e.g. sftune's built-in Hermes template writes ``\\n<tool_call>\\n{"name": "`` where Qwen's own
    writes no leading newline), so a forced call continues the training distribution. ``None``
    when the template rejects the probe, the generation prompt is not a prefix of the rendered
    turn, or ``fmt`` does not read the probe back as that call.
    """
    if fmt is None or not fmt.has_calls:
        return None
    user = [{"role": "user", "content": "x"}]
    call = template_call_form(tokenizer, None, template_kwargs).message({"role": "assistant", "content": "", "tool_calls": [
        {"id": "a1b2c3d4e", "type": "function", "function": {"name": _PROBE_NAME, "arguments": {_PROBE_ARG: 7}}}]})  # a 9-character id, as Mistral's templates require
    probe_tool = {"type": "function", "function": {"name": _PROBE_NAME, "description": "probe",
                                                   "parameters": {"type": "object", "properties": {_PROBE_ARG: {"type": "integer"}}}}}
    kw = dict(tools=[*(tools or []), probe_tool], tokenize=False, **template_kwargs)
    try:
        prompt = tokenizer.apply_chat_template(user, add_generation_prompt=True, **kw)
        full = tokenizer.apply_chat_template([*user, call], add_generation_prompt=False, **kw)
    except Exception:  # a template may refuse tool calls or the probe's shape: fall back to the declared format
        return None
    if not full.startswith(prompt):
        return None
    turn = full[len(prompt):]
    i, j = turn.find(_PROBE_NAME), turn.find(json.dumps({_PROBE_ARG: 7})[:-4])
    if i < 0 or j < i:
        return None
    parsed = parse_output(turn, fmt, in_reasoning=prompt_opens_reasoning(prompt, fmt))
    if [c["function"]["name"] for c in parsed.tool_calls] != [_PROBE_NAME]:
        return None
    return turn[:i], turn[i + len(_PROBE_NAME):j]


def start_reply(tokenizer, req: ToolRequest, **template_kwargs) -> tuple[str, ToolCallParser]:
    """The prompt text to generate from (forced prefix included) and the parser to read the reply with.

    Renders ``req.messages`` and ``req.tools`` through the tokenizer's chat template with
    ``template_kwargs`` (e.g. ``enable_thinking=False``), as training renders them (tool-call
    arguments as JSON text for a template that writes them out as they are:
    :func:`~sftune.data.toolcalls.template_call_form`). A forced call
    is written the way the template writes calls (:func:`probe_call_layout`), else from the
    declared format (``req.prefix``); then, when the generation prompt opened a reasoning block,
    the block is closed first so the call is not written inside the reasoning. The prefix is
    already fed to the parser (it yields no delta: a call is only sent once complete), so feed it
    the generated text only. Tokenize the text with ``add_special_tokens=False`` (the template wrote them).
    """
    messages = template_call_form(tokenizer, None, template_kwargs).messages(req.messages)  # as training gave them
    prompt = tokenizer.apply_chat_template(messages, tools=req.tools, tokenize=False, add_generation_prompt=True, **template_kwargs)
    in_reasoning = prompt_opens_reasoning(prompt, req.parse_format)
    prefix = req.prefix
    if req.mode in ("required", "function"):
        layout = probe_call_layout(tokenizer, req.parse_format, req.tools, **template_kwargs)
        if layout is not None:
            before_name, before_args = layout
            prefix = before_name + (json.dumps(req.function, ensure_ascii=False)[1:-1] + before_args if req.mode == "function" else "")
        elif in_reasoning:
            prefix = req.parse_format.reasoning_end + "\n\n" + prefix
    parser = ToolCallParser(req.parse_format, in_reasoning=in_reasoning)
    parser.feed(prefix)
    return prompt + prefix, parser
