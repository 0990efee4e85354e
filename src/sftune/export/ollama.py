"""An Ollama ``Modelfile`` for an exported GGUF: FROM, a Go-template TEMPLATE, SYSTEM, stop tokens, parameters.

Ollama does not run Jinja chat templates; it renders prompts with Go's ``text/template``. The
Go template is derived from the model's own chat template by rendering it on probe
conversations with sentinel contents and reading off the text around each message: the
prefix per role, the suffix that closes a message, the generation prompt, and a default system
prompt the template inserts on its own (SmolLM2's does). The derived layout is then checked
by re-rendering the probe conversations from it and comparing with the Jinja output; a
template that is not "prefix + content + suffix" per message is refused rather than
approximated.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from .errors import ExportError
from .tokenizer_meta import chat_template_text

_S, _U, _A, _U2 = "SFTUNESYSTEMSENTINEL", "SFTUNEUSERSENTINEL", "SFTUNEASSISTANTSENTINEL", "SFTUNESECONDUSERSENTINEL"


@dataclass(frozen=True)
class ChatLayout:
    """A chat format as literal text around each message's content."""

    start: str            # text before the first message (e.g. a BOS the template writes itself)
    prefix: dict          # role -> text before the content
    suffix: str           # text after every message's content
    generation_prompt: str
    default_system: str | None  # system prompt the template adds when the conversation has none

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The prompt this layout gives, the same way the Go template renders it."""
        out = self.start
        for m in messages:
            out += self.prefix[m["role"]] + m["content"] + self.suffix
        return out + (self.generation_prompt if add_generation_prompt else "")


def _between(text: str, a: str, b: str) -> str:
    i, j = text.index(a) + len(a), text.index(b)
    return text[i:j]


def _split_start(start_sys: str, before_user: str, user_prefix: str) -> str:
    """The text a render writes before its first message, told apart from the system prefix.

    Role-named formats (ChatML, Llama 3, Zephyr) open a system message exactly like a user
    message with the role renamed; otherwise, the start is what precedes the user prefix in a
    lone-user render (when the template adds no system message of its own).
    """
    shared = [k for k in range(len(start_sys) + 1) if before_user.startswith(start_sys[:k])]
    for k in reversed(shared):
        if start_sys[k:].replace("system", "user") == user_prefix:
            return start_sys[:k]
    if before_user.endswith(user_prefix):
        start = before_user[:len(before_user) - len(user_prefix)]
        if start_sys.startswith(start):
            return start
    raise ExportError("cannot tell the chat template's system-message prefix from its start text; "
                      "cannot write an Ollama TEMPLATE for it\n  fix: export without --ollama")


def chat_layout(tokenizer) -> ChatLayout:
    """Read the per-message layout off the tokenizer's chat template (see the module docstring)."""
    if not chat_template_text(tokenizer):
        raise ExportError("the tokenizer has no chat template, so there is no chat format to write into the Modelfile\n"
                          "  fix: export without --ollama, or train/save the model with a chat template (--chat-template)")

    def render(msgs, gen):
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

    conv = [{"role": "system", "content": _S}, {"role": "user", "content": _U},
            {"role": "assistant", "content": _A}, {"role": "user", "content": _U2}]
    try:
        full, closed = render(conv, True), render(conv, False)
        user_only = render([{"role": "user", "content": _U}], False)
    except Exception as e:  # a template may raise on roles it does not allow
        raise ExportError(f"the chat template cannot render a system/user/assistant conversation: {e}") from None
    suffix = closed[closed.index(_U2) + len(_U2):]
    gen = full[full.index(_U2) + len(_U2):]
    if not suffix or not gen.startswith(suffix):
        raise ExportError("the chat template does not close a user message the same way with and without a generation prompt; "
                          "cannot write an Ollama TEMPLATE for it\n  fix: export without --ollama")
    gen = gen[len(suffix):]
    start_sys = full[:full.index(_S)]
    seg_su, seg_ua, seg_au = _between(full, _S, _U), _between(full, _U, _A), _between(full, _A, _U2)
    if not all(s.startswith(suffix) for s in (seg_su, seg_ua, seg_au)):
        raise ExportError("the chat template closes messages of different roles differently; cannot write an Ollama TEMPLATE for it\n"
                          "  fix: export without --ollama")
    user_prefix = seg_su[len(suffix):]
    prefix = {"user": user_prefix, "assistant": seg_ua[len(suffix):]}
    # The user prefix also opens the second user turn; what precedes it is system prefix + start.
    if seg_au[len(suffix):] != user_prefix:
        raise ExportError("the chat template writes user turns differently depending on their position; "
                          "cannot write an Ollama TEMPLATE for it\n  fix: export without --ollama")
    before_user = user_only[:user_only.index(_U)]
    start = _split_start(start_sys, before_user, user_prefix)
    prefix["system"] = start_sys[len(start):]
    default_system = None
    rest = before_user[len(start):]
    if rest != user_prefix:  # the template added a system message of its own
        head = prefix["system"]
        tail = suffix + user_prefix
        if not (rest.startswith(head) and rest.endswith(tail)):
            raise ExportError("the chat template adds text before a lone user message that is not a system message; "
                              "cannot write an Ollama TEMPLATE for it\n  fix: export without --ollama")
        default_system = rest[len(head):len(rest) - len(tail)]
    layout = ChatLayout(start, prefix, suffix, gen, default_system)
    _verify(layout, render)
    return layout


def _verify(layout: ChatLayout, render) -> None:
    probes = [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}],
        [{"role": "system", "content": "S"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
         {"role": "user", "content": "c"}],
    ]
    for msgs in probes:
        for gen in (True, False):
            want = render(msgs, gen)
            got = layout.render(msgs, gen)
            if got != want:
                raise ExportError("the Ollama TEMPLATE derived from the chat template does not reproduce it:\n"
                                  f"  jinja:  {want!r}\n  derived: {got!r}\n  fix: export without --ollama")


def _go_literal(text: str) -> str:
    if "{{" in text or '"""' in text:
        # Go template text cannot hold "{{" literally; print it as a string action instead.
        return "{{ " + '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"' + " }}"
    return text


def go_template(layout: ChatLayout) -> str:
    """Ollama's TEMPLATE for ``layout``: every message as prefix + content + suffix, then the generation prompt.

    No ``{{-`` trim markers are used: they would eat the newlines that are part of the format.
    """
    lit = _go_literal
    roles = "".join(
        f'{{{{ {"if" if i == 0 else "else if"} eq .Role "{role}" }}}}{lit(layout.prefix[role])}{{{{ .Content }}}}'
        for i, role in enumerate(("system", "user", "assistant"))
    )
    # An assistant message that ends the list is being continued: no suffix, no new prompt.
    return (
        f"{lit(layout.start)}{{{{ range $i, $_ := .Messages }}}}{{{{ $last := eq (len (slice $.Messages $i)) 1 }}}}"
        f"{roles}{{{{ end }}}}"
        f'{{{{ if or (ne .Role "assistant") (not $last) }}}}{lit(layout.suffix)}{{{{ end }}}}'
        f'{{{{ if and $last (ne .Role "assistant") }}}}{lit(layout.generation_prompt)}{{{{ end }}}}'
        "{{ end }}"
    )


def _quote(text: str) -> str:
    if '"""' in text:
        raise ExportError('a Modelfile value cannot contain """')
    return f'"""{text}"""'


def modelfile_text(gguf_name: str, tokenizer, generation: dict[str, float], stop: list[str]) -> str:
    """The Modelfile for the GGUF file ``gguf_name`` (a path relative to the Modelfile)."""
    layout = chat_layout(tokenizer)
    lines = [f"# Written by sftune export. Create the model with: ollama create NAME -f Modelfile", f"FROM ./{gguf_name}",
             f"TEMPLATE {_quote(go_template(layout))}"]
    if layout.default_system:
        lines.append(f"SYSTEM {_quote(layout.default_system)}")
    for s in stop:
        lines.append(f"PARAMETER stop {_quote(s) if any(c.isspace() for c in s) else s}")
    for key, value in generation.items():
        lines.append(f"PARAMETER {key} {value}")
    return "\n".join(lines) + "\n"


def ollama_create_command(modelfile: Path, name: str) -> str:
    return f"ollama create {shlex.quote(name)} -f {shlex.quote(str(modelfile))}"
