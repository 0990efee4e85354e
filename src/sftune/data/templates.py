"""Chat templates: the model's own by default, a named built-in, or a Jinja file/string.

Rendering always goes through ``tokenizer.apply_chat_template`` (Hugging Face's sandboxed Jinja),
so training renders exactly what inference renders. The template chosen here is written into
the saved tokenizer (``tokenizer.chat_template``), so a plain ``transformers`` user gets it too.

>>> sorted(BUILTIN_TEMPLATES)
['chatml', 'hermes', 'human_assistant', 'llama3', 'qwen2.5', 'qwen3']
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import SftuneError

log = logging.getLogger(__name__)

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Meta's Llama 3 layout (bos, header tokens, <|eot_id|>), content trimmed as Meta's template does.
LLAMA3 = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# Qwen2.5's layout without tool calls: ChatML that injects Qwen's default system prompt.
QWEN25 = (
    "{% if messages[0]['role'] == 'system' %}"
    "{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{% else %}"
    "{{ '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'tool' %}"
    "{{ '<|im_start|>user\\n<tool_response>\\n' + message['content'] + '\\n</tool_response><|im_end|>\\n' }}"
    "{% elif not (message['role'] == 'system' and loop.first) %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# The plain "Human: ... Assistant: ..." style. The generation prompt ends at "Assistant:" with no
# space, so the answer's first token carries its leading space, as BPE tokenizers expect.
HUMAN_ASSISTANT = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token + '\\n\\n' }}"
    "{% else %}{{ 'Human: ' + message['content'] + '\\n\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

# ---- tool calling and reasoning -----------------------------------------------------------------
# Written for sftune, for ChatML tokenizers (<|im_start|>/<|im_end|>, e.g. SmolLM2) whose own
# template cannot show tools. Both are prefix-stable (no turn changes when later ones are added, so
# a conversation stays one training row), put the tool schemas in the system turn, write each call
# as <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call> after the turn's text, and the
# reasoning as <think>\n...\n</think>\n\n before it. Content is written with `~` so a turn whose
# content is absent (a call-only turn: transformers drops content=None) renders as empty text.
# With enable_thinking=false the generation prompt pre-fills an empty think block, and turns
# without reasoning carry the same empty block, so what is trained is what the model continues.
_THINK = (
    "{%- if message.reasoning_content is string %}"
    "{{- '<think>\\n' ~ message.reasoning_content ~ '\\n</think>\\n\\n' }}"
    "{%- elif enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
)
_CALLS = (
    "{%- for tool_call in message.tool_calls or [] %}"
    "{%- set call = tool_call.function if tool_call.function is defined else tool_call %}"
    "{{- '\\n<tool_call>\\n{\"name\": \"' ~ call.name ~ '\", \"arguments\": ' }}"
    "{%- if call.arguments is string %}{{- call.arguments }}{%- else %}{{- call.arguments | tojson }}{%- endif %}"
    "{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
)
_GENERATION = (
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)
_TOOLS_HEADER = (
    "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>"
)
_TOOLS_FOOTER = (
    "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\\n</tool_call>"
)


def _chatml_with_tools(tools_header: str, tool_result: str) -> str:
    """A ChatML template with tools listed in the system turn, ``<think>`` reasoning and ``<tool_call>``
    calls: Qwen3's and Hermes' layouts differ only in the words before the tool list
    (``tools_header``) and in how a tool result is written (``tool_result``, the Jinja for one
    ``tool`` message)."""
    return (
        "{%- set first_system = messages and messages[0].role == 'system' %}"
        "{%- if tools %}"
        "{{- '<|im_start|>system\\n' }}{%- if first_system %}{{- messages[0].content ~ '\\n\\n' }}{%- endif %}"
        "{{- '" + tools_header + "' }}"
        "{%- for tool in tools %}{{- '\\n' ~ (tool | tojson) }}{%- endfor %}"
        "{{- '" + _TOOLS_FOOTER + "<|im_end|>\\n' }}"
        "{%- elif first_system %}{{- '<|im_start|>system\\n' ~ messages[0].content ~ '<|im_end|>\\n' }}"
        "{%- endif %}"
        "{%- for message in messages %}"
        "{%- if message.role == 'assistant' %}"
        "{{- '<|im_start|>assistant\\n' }}" + _THINK + "{{- message.content }}" + _CALLS + "{{- '<|im_end|>\\n' }}"
        "{%- elif message.role == 'tool' %}" + tool_result +
        "{%- elif not (message.role == 'system' and loop.first) %}"
        "{{- '<|im_start|>' ~ message.role ~ '\\n' ~ message.content ~ '<|im_end|>\\n' }}"
        "{%- endif %}"
        "{%- endfor %}" + _GENERATION
    )


# Qwen3's layout: tool results as <tool_response> blocks inside a user turn (consecutive results
# share one). Unlike Qwen3's own template it keeps the reasoning of earlier turns, so it does not
# rewrite history.
QWEN3 = _chatml_with_tools(
    _TOOLS_HEADER,
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' ~ message.content ~ '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}",
)

# Hermes 2 Pro's layout (NousResearch): the same <tool_call> JSON calls, tool results in a turn of
# their own role "tool" as <tool_response> blocks.
HERMES = _chatml_with_tools(
    "You are a function calling AI model. You are provided with function signatures within <tools></tools> XML "
    "tags. You may call one or more functions to assist with the user query. Don\\'t make assumptions about what "
    "values to plug into functions.\\n<tools>",
    "{{- '<|im_start|>tool\\n<tool_response>\\n' ~ message.content ~ '\\n</tool_response><|im_end|>\\n' }}",
)

BUILTIN_TEMPLATES = {
    "chatml": CHATML,
    "llama3": LLAMA3,
    "qwen2.5": QWEN25,
    "human_assistant": HUMAN_ASSISTANT,
    "qwen3": QWEN3,
    "hermes": HERMES,
}
#: Built-ins that render tools, tool calls and reasoning (named in errors about templates that cannot).
TOOL_TEMPLATES = ("qwen3", "hermes")
_ALIASES = {"qwen2_5": "qwen2.5", "qwen": "qwen2.5", "llama-3": "llama3", "plain": "human_assistant", "human-assistant": "human_assistant"}


class TemplateError(SftuneError, ValueError):
    """A chat template that cannot be used as asked, with the fix."""


def resolve_template(spec: str | None, tokenizer, *, warn: bool = True) -> str:
    """Return the Jinja source to use.

    ``spec`` is ``None``/``"model"`` (the tokenizer's own), a built-in name, a path to a Jinja
    file, or a Jinja string (anything containing ``{{`` or ``{%``). A tokenizer without a
    template falls back to ChatML with a warning.
    """
    if spec is None or spec in ("model", "default", "auto"):
        own = getattr(tokenizer, "chat_template", None)
        if isinstance(own, dict):  # several named templates: "default" is the chat one
            own = own.get("default") or next(iter(own.values()))
        if own:
            return _parsed(own, "the model's own chat template")
        if warn:
            log.warning(
                "The tokenizer has no chat template; using ChatML. Pass --template NAME|FILE to choose another "
                "(built-ins: %s).", ", ".join(sorted(BUILTIN_TEMPLATES))
            )
        return CHATML
    name = _ALIASES.get(spec.lower(), spec.lower())
    if name in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[name]
    if "{{" in spec or "{%" in spec:
        return _parsed(spec, "the chat template given inline")
    p = Path(spec)
    if p.is_file():
        return _parsed(p.read_text(encoding="utf-8"), f"chat template {p}")
    raise TemplateError(
        f"unknown chat template {spec!r}: not a built-in ({', '.join(sorted(BUILTIN_TEMPLATES))}), "
        "not an existing file, and not a Jinja string. Leave --template unset to use the model's own."
    )


def _parsed(template: str, where: str) -> str:
    """``template`` once Jinja has parsed it (as transformers compiles it); a syntax error is a
    :class:`TemplateError` naming the template's line, not a traceback from the first row.

    >>> _parsed("{% if x %}a{% endif }", "t.jinja")
    Traceback (most recent call last):
    ...
    sftune.data.templates.TemplateError: t.jinja does not parse: line 1: unexpected '}'. Fix: correct that line, or choose another template with --template NAME|FILE (built-ins: ...
    """
    import jinja2

    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template
    except ImportError:  # transformers moved it: the first render reports the error instead
        return template
    try:
        _compile_jinja_template(template)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"{where} does not parse: line {e.lineno}: {e.message}. Fix: correct that line, or choose "
                            f"another template with --template NAME|FILE (built-ins: {', '.join(sorted(BUILTIN_TEMPLATES))})") from None
    return template


def render(
    tokenizer,
    template: str,
    messages: list[dict],
    *,
    add_generation_prompt: bool = False,
    tools: list[dict] | None = None,
    template_kwargs: dict | None = None,
) -> str:
    """Render messages to text with HF's Jinja environment (the same code path inference uses):
    ``apply_chat_template(messages, tools=tools, **template_kwargs)``, ``messages`` as
    :meth:`~sftune.data.conversation.Conversation.to_messages` gives them."""
    return tokenizer.apply_chat_template(
        messages,
        chat_template=template,
        tokenize=False,
        add_generation_prompt=add_generation_prompt,
        tools=tools or None,
        **(template_kwargs or {}),
    )


def install_template(tokenizer, template: str) -> None:
    """Write the template into the tokenizer so ``save_pretrained`` stores it with the model."""
    tokenizer.chat_template = template
