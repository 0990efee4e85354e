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

from .toolview import ReplyPrinter

HELP = """commands:
  /clear         forget the conversation so far (the system prompt stays)
  /system TEXT   set the system prompt (/system alone removes it)
  /tool TEXT     answer the model's last tool call with TEXT (a tool result) and let it go on
  /help          this text
  /quit          leave (Ctrl-D works too)
Ctrl-C while the model is answering stops that answer (it is not kept in the history)."""


class ChatSession:
    """The conversation state: an optional system prompt plus alternating user/assistant turns."""

    def __init__(self, model, tokenizer, *, system: str | None = None, sampling=None, tools: list | None = None,
                 tool_format=None, template_kwargs: dict | None = None, **options):
        from ..options import SamplingOptions
        from .toolformat import resolve_format

        self.model = model
        self.tokenizer = tokenizer
        self.system = system
        # One SamplingOptions (validated there): given whole, or as its fields (temperature=0, ...).
        self.sampling = sampling if sampling is not None else SamplingOptions(**options)
        if sampling is not None and options:
            self.sampling = sampling.model_copy(update=options)
        self.history: list[dict] = []
        # Tools, template variables and the call format: rendered and read as in training and serve.
        self.tools = tools
        self.template_kwargs = dict(template_kwargs or {})
        self.format = resolve_format(tool_format, getattr(tokenizer, "chat_template", None))

    def messages(self, user: str | None = None) -> list[dict]:
        """System prompt + history (+ a new user message): what the template renders."""
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        msgs += self.history
        if user is not None:
            msgs.append({"role": "user", "content": user})
        return msgs

    def clear(self) -> None:
        self.history = []

    def reply(self, user: str | None, on_text=None, on_delta=None, *, tool_result: str | None = None) -> dict:
        """Answer ``user`` (or, with ``tool_result``, go on after the last tool call) given the history.

        Raw text deltas go to ``on_text``; with a tool/reasoning format, parsed deltas
        (``content``, ``reasoning_content``, ``tool_calls``) go to ``on_delta``. The recorded
        assistant turn keeps its calls and reasoning, so they are context for the next turn, as
        in training. If generation is interrupted (KeyboardInterrupt) nothing is recorded and the
        exception propagates, so a half answer never becomes context for the next turn.
        """
        from .generate import stream_generate
        from .toolrequest import prepare_tool_request, start_reply

        new: list[dict] = []
        if tool_result is not None:
            calls = (self.history[-1].get("tool_calls") or []) if self.history else []
            if not calls:
                raise ValueError("no tool call to answer: /tool answers the model's last tool call")
            new.append({"role": "tool", "content": tool_result, "tool_call_id": calls[-1]["id"], "name": calls[-1]["function"]["name"]})
        elif user is not None:
            new.append({"role": "user", "content": user})
        req = prepare_tool_request([*self.messages(), *new], self.tools, None, self.format)
        prompt, parser = start_reply(self.tokenizer, req, **self.template_kwargs)
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]  # the template wrote the special tokens

        def text(t: str) -> None:
            if on_text:
                on_text(t)
            for d in parser.feed(t):
                if on_delta:
                    on_delta(d)

        s = self.sampling
        out = stream_generate(self.model, self.tokenizer, ids, on_text=text, stop=s.stop or (), seed=s.seed, **s.generation_args())
        for d in parser.finish():
            if on_delta:
                on_delta(d)
        message = parser.result().message() if self.format is not None else {"role": "assistant", "content": out["text"]}
        self.history += [*new, message]
        return {**out, "message": message}


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
        if text.startswith("/") and not text.startswith("/tool"):
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
        tool_result = None
        if text.startswith("/tool"):
            tool_result = text[len("/tool"):].strip()
        printer = ReplyPrinter(stdout) if session.format is not None else None
        try:
            if printer is not None:  # reasoning apart from the answer, calls shown as calls
                out = session.reply(None if tool_result is not None else text, on_delta=printer, tool_result=tool_result)
                printer.close()
            else:
                out = session.reply(None if tool_result is not None else text, on_text=write, tool_result=tool_result)
        except KeyboardInterrupt:
            write("\n[answer interrupted; not kept]\n")
            continue
        except ValueError as e:
            write(f"[{e}]\n")
            continue
        note = " [stopped: max new tokens reached]" if out["finish_reason"] == "length" else ""
        write(note + "\n")
    return session
