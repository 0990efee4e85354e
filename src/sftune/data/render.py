"""Exact trained spans of one chat conversation, for any template: agent and reasoning data too.

The rule (the model is trained on each assistant turn exactly as it generates it):

- For assistant turn ``k``: ``prompt_k = render(msgs[:k], add_generation_prompt=True)`` and
  ``upto_k = render(msgs[:k+1])``. ``upto_k`` must start with ``prompt_k`` (else the template is
  not usable for that turn: refused with :class:`TemplateError`); the turn's text is
  ``upto_k[len(prompt_k):]``, tool-call markup, reasoning and end-of-turn token included, up to
  its last EOS (generation stops there; text a template writes after it is not trained).
- A rendering ``R`` of ``msgs[:j+1]`` trains turn ``k`` exactly iff ``R`` starts with
  ``prompt_k`` + the turn's text.
- Rows: the full conversation trains every turn exact in it; while some turn is left, the
  rendering up to the latest untrained turn (which is ``upto_k`` itself) trains the turns exact
  in it. A prefix-stable template gives one row; a template that rewrites history (Qwen3 drops
  the reasoning of turns before the last user message, Mistral moves the tool list to the last
  user message) gives as few rows as keep every turn trained exactly once. Detected from the
  renderings, with no list of models.
- What the template cannot show must not silently vanish: a turn whose rendering is the same
  with and without its ``tool_calls`` (or its reasoning), or a conversation rendered the same
  with and without its ``tools``, is refused with the fix (:func:`hidden`).

Each refusal is a :class:`RowTemplateError` naming the conversation's file:line, what failed
(its ``reason``, one of :data:`ROW_REASONS`) and the fix. A row the template cannot show is a bad
row like any other: the encoder (:mod:`sftune.data.tokenize`) drops it under that reason and the
run goes on, unless the template has shown that feature for no conversation at all (it can never
show tool calls, say): then the error stops the run, since dropping every such row would
quietly train a tool-less model on agent data.

Reasoning (``--reasoning``): ``keep`` trains it; ``mask`` renders it but trains only what the
turn has besides it (the characters that differ between the turn rendered with and without its
reasoning are masked); ``inline`` writes it into the content as ``<think>\\n…\\n</think>\\n\\n``
(:func:`apply_reasoning`); ``drop`` removes it.

>>> import dataclasses
>>> from .conversation import Conversation, Message
>>> c = Conversation.chat([Message("user", "2+2?"), Message("assistant", "4", reasoning="add")])
>>> apply_reasoning(c, "inline").messages[1].content
'<think>\\nadd\\n</think>\\n\\n4'
"""

from __future__ import annotations

import dataclasses
import logging

from .conversation import Conversation
from .masking import trained_messages
from .report import DataError
from .shapes import trained_span
from .templates import TOOL_TEMPLATES, TemplateError, render
from .toolcalls import OBJECT_FORM, CallForm, template_call_form

log = logging.getLogger(__name__)

#: Why the template cannot show a conversation: the report's reason for each dropped row.
NOT_PREFIX_STABLE = "chat template is not prefix-stable for this row"
TOOLS_HIDDEN = "chat template does not show the tool schemas"
CALLS_HIDDEN = "chat template does not show the tool calls"
REASONING_HIDDEN = "chat template does not show the reasoning"
ROW_REASONS = (NOT_PREFIX_STABLE, TOOLS_HIDDEN, CALLS_HIDDEN, REASONING_HIDDEN)
#: The template itself raised on the row (its ``raise_exception``, a key it needs and lacks).
TEMPLATE_FAILED = "chat template failed"

REASONING_POLICIES = ("keep", "mask", "inline", "drop")
#: Renders of every run checked against ``apply_chat_template`` before the direct path is trusted.
DIRECT_CHECKS = 32


class RowTemplateError(TemplateError):
    """The chat template cannot show one conversation as it is trained.

    ``reason``: one of :data:`ROW_REASONS` (what the data report counts); ``source``: the
    conversation's file:line; ``detail``: what failed, where in the conversation, and the fix.

    >>> e = RowTemplateError(NOT_PREFIX_STABLE, "a.jsonl:2", "message 1: ...")
    >>> str(e), e.reason
    ('a.jsonl:2: message 1: ...', 'chat template is not prefix-stable for this row')
    """

    def __init__(self, reason: str, source: str, detail: str):
        self.reason, self.source, self.detail = reason, source, detail
        super().__init__(f"{source}: {detail}")


def apply_reasoning(conv: Conversation, policy: str) -> Conversation:
    """``conv`` with its reasoning written inline into the content (``inline``) or removed
    (``drop``); unchanged for ``keep``/``mask`` and for conversations without reasoning."""
    if policy not in REASONING_POLICIES:
        raise ValueError(f"unknown reasoning policy {policy!r}; use one of {', '.join(REASONING_POLICIES)}")
    if policy in ("keep", "mask") or all(m.reasoning is None for m in conv.messages):
        return conv
    messages = []
    for m in conv.messages:
        if m.reasoning is not None:
            if policy == "inline":
                m = dataclasses.replace(m, content=f"<think>\n{m.reasoning}\n</think>\n\n{m.content}", reasoning=None, content_null=False)
            else:
                m = dataclasses.replace(m, reasoning=None)
        messages.append(m)
    return dataclasses.replace(conv, messages=messages)


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class ChatRenderer:
    """Renders chat conversations under one template, tools and template variables, and finds
    the rows and trained character spans of the rule above (see the module docstring)."""

    def __init__(self, tokenizer, template: str, template_kwargs: dict | None = None, reasoning: str = "keep"):
        self.tokenizer, self.template = tokenizer, template
        self.template_kwargs = dict(template_kwargs or {})
        if reasoning not in REASONING_POLICIES:
            raise ValueError(f"unknown reasoning policy {reasoning!r}; use one of {', '.join(REASONING_POLICIES)}")
        self.reasoning = reasoning
        self._tools_shown = False  # once a conversation showed its tools, the template does
        self._direct = _direct_renderer(tokenizer, template, self.template_kwargs)
        self._checks_left = DIRECT_CHECKS
        self._call_form: CallForm | None = None

    @property
    def call_form(self) -> CallForm:
        """How this template takes tool calls, found by :func:`~sftune.data.toolcalls.template_call_form`
        when the first call is rendered; ``sftune chat``/``serve`` find the same for the saved template."""
        if self._call_form is None:
            self._call_form = template_call_form(self.tokenizer, self.template, self.template_kwargs)
            if self._call_form.arguments == "string":
                log.info("the chat template writes tool-call arguments out as they are: they are given to it as JSON text")
            if self._call_form.null_content is not None:
                log.info("the chat template fails on a tool-calling turn without content: null content is given to it as \"\"")
        return self._call_form

    def render(self, msgs: list[dict], tools, add_generation_prompt: bool = False) -> str:
        """``apply_chat_template(msgs, tools=tools, **template_kwargs)`` as text.

        Agent data renders every conversation several times, and half of each
        ``apply_chat_template`` call is transformers copying the messages and tools into plain
        data. The direct path renders the same compiled template with the same variables from
        messages that already are plain data; its first renders of every run are compared with
        ``apply_chat_template`` and any difference turns it off (same result, slower)."""
        if self._direct is not None:
            try:
                text = self._direct(msgs, tools, add_generation_prompt)
            except Exception:
                text = None  # let apply_chat_template raise (or not) with its own message
            if self._checks_left <= 0 and text is not None:
                return text
            exact = render(
                self.tokenizer, self.template, msgs, add_generation_prompt=add_generation_prompt, tools=tools,
                template_kwargs=self.template_kwargs,
            )
            self._checks_left -= 1
            if text != exact:
                log.info("direct template rendering differs from apply_chat_template; using apply_chat_template")
                self._direct = None
            return exact
        return render(
            self.tokenizer, self.template, msgs, add_generation_prompt=add_generation_prompt, tools=tools,
            template_kwargs=self.template_kwargs,
        )

    def rows(
        self, conv: Conversation, chosen: list[int], whole: bool = False, inlined: dict[int, str] | None = None
    ) -> list[tuple[str, list[tuple[int, int]]]]:
        """``(text, trained character spans)`` per row for ``conv`` (already through
        :func:`apply_reasoning`); ``chosen``: the assistant message indices to train;
        ``inlined``: the reasoning :func:`apply_reasoning` wrote into the content, per message
        index (a template that strips ``<think>`` blocks from content must not hide it)."""
        has_calls = any(m.tool_calls for m in conv.messages)
        msgs, tools = conv.to_messages(self.call_form if has_calls else OBJECT_FORM), conv.tools
        full = self.render(msgs, tools)
        if whole:
            return [(full, [(0, len(full))])]
        if tools and not self._tools_shown:
            self._check_tools_shown(conv, msgs, full)
        if not chosen:
            return [(full, [])]
        turns = {}
        for k in chosen:
            prompt = self.render(msgs[:k], tools, add_generation_prompt=True)
            upto = full if k + 1 == len(msgs) else self.render(msgs[: k + 1], tools)
            if not upto.startswith(prompt):
                raise RowTemplateError(
                    NOT_PREFIX_STABLE, f"{conv.source or 'conversation'}",
                    f"message {k}: the chat template is not prefix-stable: the conversation rendered up to this "
                    "answer does not start with its prompt rendered with the generation prompt, so the answer the "
                    "model would generate cannot be located exactly." + self._prefix_hint(conv, k),
                )
            without_reasoning = self._check_shown(conv, msgs, tools, k, prompt, upto)
            if inlined and inlined.get(k, "").strip() and inlined[k].strip() not in upto[len(prompt):]:
                raise hidden("the reasoning written into the content (<think>...</think>)", conv, k)
            end = self._generated_end(prompt, upto)
            turns[k] = (upto[:end], self._turn_spans(prompt, upto, end, without_reasoning), upto)
        out, pending, text = [], list(chosen), full
        while pending:
            exact = [k for k in pending if text.startswith(turns[k][0])]
            out.append((text, [s for k in exact for s in turns[k][1]]))
            pending = [k for k in pending if k not in exact]
            if pending:  # render up to the latest turn left: it is exact there by construction
                text = turns[pending[-1]][2]
        return out

    def _prefix_hint(self, conv: Conversation, k: int) -> str:
        m = conv.messages[k]
        if m.reasoning is not None and self.template_kwargs.get("enable_thinking") is False:
            return " With enable_thinking=false the generation prompt holds an empty think block, so a turn with reasoning cannot follow it: use --reasoning drop or inline, or leave enable_thinking on."
        return (
            " The template renders the prompt differently once the answer follows it (e.g. it writes the system prompt "
            "or the tool list only into a user message that is the last message). Use a template whose answers continue "
            "their generation prompt (built in: " + ", ".join(TOOL_TEMPLATES) + ", chatml), or --mask last if only the "
            "final turns differ."
        )

    def _same(self, msgs: list[dict], tools, text: str) -> str | None:
        """The rendering of ``msgs`` (compared with ``text`` by the caller); ``None`` if it fails."""
        try:
            alt = self.render(msgs, tools)
        except Exception:  # the template needs the removed key: it certainly shows it
            return None
        return alt

    def _check_tools_shown(self, conv: Conversation, msgs: list[dict], full: str) -> None:
        if self._same(msgs, None, full) == full:
            raise hidden("the tool schemas ('tools')", conv, None)
        self._tools_shown = True

    def _check_shown(self, conv: Conversation, msgs: list[dict], tools, k: int, prompt: str, upto: str) -> str | None:
        """Refuse when turn ``k``'s tool calls or reasoning vanish from its rendering; return the
        turn rendered without its reasoning (for ``--reasoning mask``), when it has some.

        Tool calls are shown when the turn's text names every function called (a template that
        writes only a marker shows none of the call). Reasoning: the exact test renders the turn
        without it and compares; it is skipped when the turn's text holds the reasoning (a
        template that hid it could not write it unless the content itself repeats it, and then
        another turn still shows the problem). This halves the renders of agent data."""
        m = msgs[k]
        completion = upto[len(prompt):]
        missing = [c["function"]["name"] for c in m.get("tool_calls") or [] if c["function"]["name"] not in completion]
        if missing:
            # Every tool template writes the function it calls; one that writes only a marker (vLLM's
            # short Mistral template expects the calls' text in `content`) would train a call of nothing.
            alt = {key: v for key, v in m.items() if key != "tool_calls"}
            if alt.get("content") is None:
                alt["content"] = ""
            same = self._same(msgs[:k] + [alt], tools, upto) == upto
            raise hidden("the assistant's tool calls ('tool_calls')", conv, k, None if same else
                         f"its rendering of the turn never names the function called ({', '.join(map(repr, missing))})")
        reasoning = m.get("reasoning_content")
        if not isinstance(reasoning, str) or not reasoning.strip():
            return None  # no reasoning, or an empty one: nothing that could vanish
        if self.reasoning != "mask" and reasoning.strip() in completion:
            return None
        alt = {key: v for key, v in m.items() if key != "reasoning_content"}
        without = self._same(msgs[:k] + [alt], tools, upto)
        if without == upto:
            raise hidden("the assistant's reasoning ('reasoning_content')", conv, k)
        return without

    def _generated_end(self, prompt: str, upto: str) -> int:
        """Where the model's generation of this turn ends: after the last EOS in the turn's text,
        else at the end of ``upto``. Templates that write more after it (one that always appends
        the next generation prompt) must not train that text. (The last, not the first: an EOS
        written inside the data's own text stays trained, as the shape path trains it.)"""
        eos = self.tokenizer.eos_token
        i = upto.rfind(eos, len(prompt)) if eos else -1
        return len(upto) if i == -1 else i + len(eos)

    def _turn_spans(self, prompt: str, upto: str, b: int, without_reasoning: str | None) -> list[tuple[int, int]]:
        a = len(prompt)
        if self.reasoning == "mask" and without_reasoning is not None and without_reasoning.startswith(prompt):
            # Train what the turn holds besides its reasoning: the common prefix and suffix of
            # the turn rendered with and without it; the differing middle is the reasoning.
            cw, co = upto[a:b], without_reasoning[a : self._generated_end(prompt, without_reasoning)]
            p = _common_prefix(cw, co)
            s = min(_common_prefix(cw[::-1], co[::-1]), min(len(cw), len(co)) - p)
            spans = [(a, a + p)] if p else []
            tail = trained_span(upto, b - s, b)
            return spans + ([tail] if tail else [])
        span = trained_span(upto, a, b)
        return [span] if span else []


def _direct_renderer(tokenizer, template: str, template_kwargs: dict):
    """A function rendering like ``apply_chat_template`` (transformers 4.4x-5.x): None-valued
    keys dropped, reasoning aliased to ``thinking``, the special tokens and template variables
    passed; ``None`` when transformers' compiler is not where it is expected."""
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template
    except ImportError:
        return None
    compiled = _compile_jinja_template(template)
    variables = {**tokenizer.special_tokens_map, **template_kwargs}

    def direct(msgs: list[dict], tools, add_generation_prompt: bool) -> str:
        chat = []
        for m in msgs:
            m = {k: v for k, v in m.items() if v is not None}
            if m.get("reasoning_content") is not None:
                m = {"thinking": m["reasoning_content"], **m}
            chat.append(m)
        return compiled.render(messages=chat, tools=tools or None, documents=None, add_generation_prompt=add_generation_prompt, **variables)

    return direct


def hidden(what: str, conv: Conversation, k: int | None, why: str | None = None) -> RowTemplateError:
    """The refusal for a template that does not show ``what``; ``why`` (default: it renders the
    same text with and without it)."""
    fix = f"use a template that renders them: --template {' or --template '.join(TOOL_TEMPLATES)} (built in), or a .jinja file"
    if "into the content" in what:
        fix = "--reasoning drop (train without it), or " + fix
    elif "reasoning" in what:
        fix = "--reasoning inline (writes it into the content as <think>...</think>), --reasoning drop, or " + fix
    reason = REASONING_HIDDEN if "reasoning" in what else CALLS_HIDDEN if "tool_calls" in what else TOOLS_HIDDEN
    where = f"message {k}: " if k is not None else ""
    why = why or "it renders this conversation the same with and without them"
    return RowTemplateError(
        reason, f"{conv.source or 'conversation'}",
        f"{where}the chat template does not show {what}: {why}, so the model would be trained without what the data "
        f"holds. Fix: {fix}.",
    )


def template_error_text(e: BaseException) -> str:
    r"""A template's error as the report shows it: its message, and the line of the template it came
    from (Jinja puts the template's own frames, named ``<template>``, in the traceback).

    >>> from transformers.utils.chat_template_utils import _compile_jinja_template
    >>> t = _compile_jinja_template("{% for m in messages %}\n{% if m.role == 'x' %}{{ raise_exception('no role x') }}{% endif %}{% endfor %}")
    >>> try:
    ...     t.render(messages=[{"role": "x"}])
    ... except Exception as e:
    ...     print(template_error_text(e))
    template line 2: no role x
    """
    line, tb = None, e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno  # the innermost template frame: where the template raised
        tb = tb.tb_next
    return f"template line {line}: {e}" if line else str(e)


def drop_or_stop(failed: list[tuple], shown, report) -> None:
    """Drop, into ``report``, the conversations of one chunk the template could not show, given as
    ``(conversation, reason, detail, exception)``; ``shown``: per reason, how many conversations
    encoded so far needed it and rendered (:func:`shown_by`; every chat conversation needs
    rendering at all, :data:`TEMPLATE_FAILED`).

    When no conversation has shown a reason's need, the template cannot meet it for any row
    (e.g. it can never show tool calls): the first such failure stops the run with its fix, since
    dropping every row that needs it would quietly train a model without what the data holds.
    Decided per chunk, as the encoder is called: a chunk whose only tool rows fail stops even if
    a later chunk would pass.

    Under ``report.strict`` the first failure stops the run: a :class:`RowTemplateError` as
    it is, the template's own error as a :class:`~sftune.data.report.DataError` naming the row.
    """
    if failed and report.strict:
        conv, _, detail, e = failed[0]
        raise e if isinstance(e, RowTemplateError) else DataError(detail, conv.source) from e
    for conv, reason, detail, e in failed:
        if not shown[reason]:
            n = sum(f[1] == reason for f in failed)
            what = "the chat template raised: " + detail if reason == TEMPLATE_FAILED else detail
            fix = "" if reason != TEMPLATE_FAILED else (
                " Fix: give the rows what the template reads (its error above names it), or use a template that "
                f"takes this data: --template {' or --template '.join(TOOL_TEMPLATES)} (built in), or a .jinja file.")
            raise RowTemplateError(
                reason, str(conv.source or "conversation"), f"{what} (It fails this way on all {n} conversations that "
                "need it so far, so the run stops; with a template that fails on some rows only, those rows are "
                f"dropped and counted.){fix}",
            ) from e
    for conv, reason, detail, _ in failed:
        report.drop(reason, conv.source, detail=detail)


def shown_by(conv: Conversation, mask: str, reasoning: str) -> set[str]:
    """The reasons a conversation that rendered without error proves the template handles, under
    the encoder's ``mask`` and ``reasoning`` policies: rendering at all (:data:`TEMPLATE_FAILED`),
    and, for the turns it trains, answers located exactly, its ``tools``, tool calls and reasoning.

    >>> from .conversation import Message
    >>> c = Conversation.chat([Message("user", "2+2?"), Message("assistant", "4", reasoning="add")])
    >>> sorted(shown_by(c, "assistant", "keep")) == sorted([TEMPLATE_FAILED, NOT_PREFIX_STABLE, REASONING_HIDDEN])
    True
    >>> sorted(shown_by(c, "assistant", "drop")) == sorted([TEMPLATE_FAILED, NOT_PREFIX_STABLE])
    True
    """
    if conv.kind != "chat":
        return set()
    if mask == "all":  # rendered whole: nothing but the rendering itself is checked
        return {TEMPLATE_FAILED}
    inlined = {k: m.reasoning for k, m in enumerate(conv.messages) if m.reasoning} if reasoning == "inline" else {}
    conv = apply_reasoning(conv, reasoning)
    chosen = trained_messages(conv, mask)
    out = {TEMPLATE_FAILED} | ({NOT_PREFIX_STABLE} if chosen else set())
    if chosen and conv.tools:
        out.add(TOOLS_HIDDEN)
    turns = [conv.messages[k] for k in chosen]
    if any(m.tool_calls for m in turns):
        out.add(CALLS_HIDDEN)
    if any((m.reasoning or "").strip() for m in turns) or any(inlined.get(k, "").strip() for k in chosen):
        out.add(REASONING_HIDDEN)
    return out
