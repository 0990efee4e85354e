"""Chat templates: the model's own by default, a named built-in, or a Jinja file/string.

Rendering always goes through ``tokenizer.apply_chat_template`` (Hugging Face's sandboxed Jinja),
so training renders exactly what inference renders. The template chosen here is written into
the saved tokenizer (``tokenizer.chat_template``), so a plain ``transformers`` user gets it too.

>>> sorted(BUILTIN_TEMPLATES)
['chatml', 'human_assistant', 'llama3', 'qwen2.5']
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

BUILTIN_TEMPLATES = {"chatml": CHATML, "llama3": LLAMA3, "qwen2.5": QWEN25, "human_assistant": HUMAN_ASSISTANT}
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
            return own
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
        return spec
    p = Path(spec)
    if p.is_file():
        return p.read_text(encoding="utf-8")
    raise TemplateError(
        f"unknown chat template {spec!r}: not a built-in ({', '.join(sorted(BUILTIN_TEMPLATES))}), "
        "not an existing file, and not a Jinja string. Leave --template unset to use the model's own."
    )


def render(tokenizer, template: str, messages: list[dict], *, add_generation_prompt: bool = False) -> str:
    """Render messages to text with HF's Jinja environment (the same code path inference uses)."""
    return tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def install_template(tokenizer, template: str) -> None:
    """Write the template into the tokenizer so ``save_pretrained`` stores it with the model."""
    tokenizer.chat_template = template
