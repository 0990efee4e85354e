"""``sftune chat``: a multi-turn conversation in the terminal, answers streamed as they are generated.

The loop reads from and writes to any text streams, so tests drive it with ``io.StringIO``:

>>> # session = run_chat(model, tok, io.StringIO("Hi\\n/quit\\n"), io.StringIO(), temperature=0)
>>> # session.history -> [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "..."}]

Prompts are rendered with the model's own saved chat template (the one used in training), the
same path :func:`sftune.infer.generate.generate_texts` takes.
"""

from __future__ import annotations

import sys
from typing import TextIO

HELP = """commands:
  /clear         forget the conversation so far (the system prompt stays)
  /system TEXT   set the system prompt (/system alone removes it)
  /help          this text
  /quit          leave (Ctrl-D works too)
Ctrl-C while the model is answering stops that answer (it is not kept in the history)."""


class ChatSession:
    """The conversation state: an optional system prompt plus alternating user/assistant turns."""

    def __init__(self, model, tokenizer, *, system: str | None = None, sampling=None, **options):
        from ..options import SamplingOptions

        self.model = model
        self.tokenizer = tokenizer
        self.system = system
        # One SamplingOptions (validated there): given whole, or as its fields (temperature=0, ...).
        self.sampling = sampling if sampling is not None else SamplingOptions(**options)
        if sampling is not None and options:
            self.sampling = sampling.model_copy(update=options)
        self.history: list[dict] = []

    def messages(self, user: str | None = None) -> list[dict]:
        """System prompt + history (+ a new user message): what the template renders."""
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        msgs += self.history
        if user is not None:
            msgs.append({"role": "user", "content": user})
        return msgs

    def clear(self) -> None:
        self.history = []

    def reply(self, user: str, on_text=None) -> dict:
        """Answer ``user`` given the history; stream deltas to ``on_text``; record both turns.

        If generation is interrupted (KeyboardInterrupt) the turn is not recorded and the
        exception propagates, so a half answer never becomes context for the next turn.
        """
        from .generate import encode_prompt, stream_generate

        msgs = self.messages(user)
        ids = encode_prompt(self.tokenizer, msgs)
        s = self.sampling
        out = stream_generate(self.model, self.tokenizer, ids, on_text=on_text, stop=s.stop or (), seed=s.seed, **s.generation_args())
        self.history += [{"role": "user", "content": user}, {"role": "assistant", "content": out["text"]}]
        return out


def _read_line(stdin: TextIO, stdout: TextIO, prompt: str) -> str | None:
    """One line of input, or None at end of input. A real terminal gets readline editing via input()."""
    if stdin is sys.stdin and stdout is sys.stdout and stdin.isatty():
        try:
            return input(prompt)
        except EOFError:
            return None
    stdout.write(prompt)
    stdout.flush()
    line = stdin.readline()
    if not line:
        return None
    return line.rstrip("\r\n")


def run_chat(
    model,
    tokenizer,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    *,
    system: str | None = None,
    prompt: str = ">>> ",
    sampling=None,
    **options,
) -> ChatSession:
    """Interactive chat until ``/quit`` or end of input; returns the session (its history).

    ``sampling`` is a :class:`sftune.options.SamplingOptions`; or give its fields as keywords
    (``max_new_tokens``, ``temperature``, ``top_p``, ``top_k``, ``repetition_penalty``,
    ``frequency_penalty``, ``presence_penalty``, ``logit_bias``, ``stop``, ``seed``).
    """
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    session = ChatSession(model, tokenizer, system=system, sampling=sampling, **options)

    def write(text: str) -> None:
        stdout.write(text)
        stdout.flush()

    write("sftune chat: type a message and press Enter; /help for commands.\n")
    if system:
        write(f"[system prompt: {system}]\n")
    while True:
        try:
            line = _read_line(stdin, stdout, prompt)
        except KeyboardInterrupt:  # Ctrl-C at the prompt leaves, like most REPLs
            line = None
        if line is None:
            write("\n")
            break
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            cmd, _, arg = text.partition(" ")
            if cmd in ("/quit", "/exit"):
                break
            if cmd == "/clear":
                session.clear()
                write("[history cleared]\n")
            elif cmd == "/system":
                session.system = arg.strip() or None
                write(f"[system prompt: {session.system}]\n" if session.system else "[system prompt removed]\n")
            elif cmd == "/help":
                write(HELP + "\n")
            else:
                write(f"unknown command {cmd}; /help lists the commands\n")
            continue
        try:
            out = session.reply(text, on_text=write)
        except KeyboardInterrupt:
            write("\n[answer interrupted; not kept]\n")
            continue
        note = " [stopped: max new tokens reached]" if out["finish_reason"] == "length" else ""
        write(note + "\n")
    return session
