"""Conversations -> ``input_ids`` + ``labels``: the loss mask, exact for any chat template.

How the trained spans are found, without ``{% generation %}`` markers and without searching
for marker strings in the token stream (which breaks when a tokenizer merges a marker with
its neighbours, or when a user message itself contains ``<|im_start|>assistant``):

1. Render the whole conversation once: ``full``.
2. For each assistant turn ``i`` the policy trains, render ``messages[:i]`` with the
   generation prompt (``prefix``) and ``messages[:i+1]`` without it (``upto``). The template
   is a function of the messages, so ``prefix`` and ``upto`` must be prefixes of ``full``; the
   answer occupies the characters ``[len(prefix), len(upto))`` of ``full``, end-of-turn token
   included. Trailing whitespace the template writes *after* the end-of-turn token (ChatML's
   ``"\\n"``) is not trained: generation stops before it.
3. Tokenize ``full`` once with offsets; a token is trained when it *starts* inside a span.
   A token that straddles the start of a span contains prompt text, so it is not trained.

This holds for templates that inject a default system prompt, trim or rewrite content, and
multi-turn conversations, because only rendered text is compared. Tools, tool calls, tool
results and reasoning reach the template as ``Conversation.to_messages()`` gives them, with the
``tools`` and ``template_kwargs`` inference uses. A template that rewrites earlier turns when
later ones are added (Qwen3 drops old reasoning) makes one conversation several rows, each turn
trained once where its text is exact; a row whose tool calls or reasoning it hides is dropped
(the run stops when it shows them for no row); see :mod:`sftune.data.render`.

Speed, with the same result: for templates that only paste message content into place (proved
from the template's syntax tree), steps 1-2 are done once per conversation *shape* and reused
(:mod:`sftune.data.shapes`); step 3 finds each span's first and last token in Rust instead of
converting every token's offsets to Python. Both shortcuts are checked against the direct way
on the first conversation of every shape and the first row of every chunk, and ``fast=False``
turns them off.

>>> # ChatML, "Hi" -> "Hello!": trained tokens are "Hello", "!" and "<|im_end|>"; the "\\n"
>>> # after <|im_end|> and the whole prompt get label -100.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .conversation import Conversation
from .masking import check_mask_policy, trained_messages
from .render import (TEMPLATE_FAILED, ChatRenderer, RowTemplateError, apply_reasoning, drop_or_stop, shown_by,
                     template_error_text)
from .report import DataError, DataReport
from .shapes import ShapeRenderer, opacity_problem
from .templates import TemplateError

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # what torch.nn.CrossEntropyLoss ignores by default


@dataclass
class EncodeStats:
    truncated: int = 0
    spans: int = 0
    spans_without_end_token: int = 0
    straddling_tokens: int = 0
    end_token_examples: set = field(default_factory=set)


class Encoder:
    """Turns conversations into ``{"input_ids", "labels"}`` under one template and mask policy.

    ``mask``: ``assistant`` (every assistant turn), ``last`` (the last assistant turn only),
    ``completion`` (the messages a reader flagged as the completion; every assistant turn when
    none is flagged), ``all`` (every token, template included). ``text`` conversations are
    trained on every token; ``completion`` conversations (raw prompt + completion strings) on the
    completion, whatever the policy but ``all``.
    """

    def __init__(
        self,
        tokenizer,
        template: str,
        mask: str = "assistant",
        max_length: int = 2048,
        *,
        fast: bool = True,
        template_kwargs: dict | None = None,
        reasoning: str = "keep",
    ):
        if not getattr(tokenizer, "is_fast", False):
            raise TemplateError(
                f"{type(tokenizer).__name__} is a slow tokenizer: exact loss masks need character offsets, "
                "which only fast (Rust) tokenizers give. Load it with use_fast=True or convert it."
            )
        check_mask_policy(mask)
        self.tokenizer = tokenizer
        self.template = template
        self.mask = mask
        self.max_length = max_length
        self.stats = EncodeStats()
        # template_kwargs (e.g. enable_thinking=False) reach every render, as at inference.
        self.renderer = ChatRenderer(tokenizer, template, template_kwargs, reasoning)
        self.reasoning = reasoning
        # Two shortcuts, each exact and each checked against the direct way as it runs; fast=False
        # turns both off (same rows, slower: for checking). Content-opaque templates render once
        # per conversation shape (sftune.data.shapes); loss masks are set from each span's end
        # tokens (_chat_labels). mask="all" keeps the per-token rule, which skips zero-width tokens.
        problem = opacity_problem(template) if fast else "fast=False"
        self.shapes = ShapeRenderer(tokenizer, template, template_kwargs) if problem is None else None
        if problem is not None:
            log.info("chat template is rendered per conversation (%s)", problem)
        self._checked_shapes: set[tuple[str, ...]] = set()
        self._boundary_labels = fast and mask != "all"
        # Tokens that may legitimately end an assistant turn: EOS and the other special tokens
        # (<|im_end|>, <|eot_id|>, <end_of_turn>, ...).
        self.end_ids = set(tokenizer.all_special_ids)
        if tokenizer.eos_token_id is not None:
            self.end_ids.add(tokenizer.eos_token_id)
        # Per reason a row can fail on: conversations so far that proved the template handles it.
        self.shown: Counter = Counter()

    # ---- step 1 and 2: text and character spans ---------------------------------------------
    def _chat_rows(self, conv: Conversation) -> list[tuple[str, list[tuple[int, int]]]]:
        """``(text, spans)`` per row: one, unless the template rewrites history (see render.py)."""
        inlined = {k: m.reasoning for k, m in enumerate(conv.messages) if m.reasoning} if self.reasoning == "inline" else None
        conv = apply_reasoning(conv, self.reasoning)
        chosen = [] if self.mask == "all" else trained_messages(conv, self.mask)  # the policy step
        # The shape shortcut only knows roles and text: tools, calls and reasoning take the direct path.
        if self.shapes is not None and conv.is_plain:
            quick = self.shapes.text_and_spans(conv.messages, chosen, whole=self.mask == "all")
            if quick is not None:
                roles = tuple(m.role for m in conv.messages)
                if roles in self._checked_shapes:
                    return [quick]
                # First conversation of this shape: check the fast path against the exact one.
                exact = self.renderer.rows(conv, chosen, whole=self.mask == "all", inlined=inlined)
                if exact == [quick]:
                    self._checked_shapes.add(roles)
                else:
                    log.warning(
                        "shape-cached rendering disagreed with the chat template at %s; rendering every "
                        "conversation in full from here on (slower, same result). Please report this template.",
                        conv.source or "a conversation",
                    )
                    self.shapes = None
                return exact
        return self.renderer.rows(conv, chosen, whole=self.mask == "all", inlined=inlined)

    def renderings(self, conv: Conversation) -> list[tuple[str, list[tuple[int, int]], bool]]:
        """``(text, trained character spans, raw)`` per row of ``conv``; ``raw``: add special
        tokens and append EOS (raw text and completions, not template-rendered chats)."""
        if conv.kind == "chat":
            return [(text, spans, False) for text, spans in self._chat_rows(conv)]
        return [self.text_and_spans(conv)]

    def text_and_spans(self, conv: Conversation) -> tuple[str, list[tuple[int, int]], bool]:
        """Return (text, trained character spans, whether to add special tokens/append EOS); for a
        chat conversation, its first row (see :meth:`renderings`)."""
        if conv.kind == "chat":
            text, spans = self._chat_rows(conv)[0]
            return text, spans, False
        if conv.kind == "completion":
            prompt, completion = conv.messages[0].content, conv.messages[1].content
            text = prompt + completion
            return text, [(0 if self.mask == "all" else len(prompt), len(text))], True
        text = conv.messages[0].content
        return text, [(0, len(text))], True

    # ---- step 3: tokens and labels ----------------------------------------------------------
    def _labels(self, ids: list[int], offsets, spans, raw: bool) -> tuple[list[int], list[int]]:
        ids = list(ids)
        off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
        starts, ends = off[:, 0], off[:, 1]
        trained = np.zeros(len(ids), dtype=bool)
        for s, e in spans:
            inside = (starts >= s) & (starts < e) & (ends > starts)
            trained |= inside
            self.stats.straddling_tokens += int(np.count_nonzero((starts < s) & (ends > s)))
            if inside.any():
                self._count_span(ids[int(np.flatnonzero(inside)[-1])], check_end=not raw and self.mask != "all")
        if raw and spans and self.tokenizer.eos_token_id is not None and (not ids or ids[-1] != self.tokenizer.eos_token_id):
            # Raw text and completions end with EOS so the model learns to stop there too.
            ids.append(self.tokenizer.eos_token_id)
            trained = np.append(trained, True)
        labels = np.where(trained, np.asarray(ids, dtype=np.int64), IGNORE_INDEX).tolist()
        return ids, labels

    def _count_span(self, last_id: int, check_end: bool) -> None:
        """Statistics of one trained span, given its last trained token."""
        self.stats.spans += 1
        if not check_end:
            return
        if last_id not in self.end_ids:
            self.stats.spans_without_end_token += 1
        elif len(self.stats.end_token_examples) < 3:
            self.stats.end_token_examples.add(self.tokenizer.convert_ids_to_tokens(last_id))

    def _chat_labels(self, encodings: list, texts: list[str], spans_list: list) -> list[tuple[list[int], list[int]]]:
        """:meth:`_labels` for template-rendered rows, without converting every token's offsets.

        Token offsets of text encoded without added special tokens never go backwards, so the
        tokens trained for a span ``[s, e)`` are one run: from the first token starting at or
        after ``s`` to the last starting before ``e``. ``Encoding.char_to_token`` finds both ends
        in Rust, and only the few tokens at each end are looked at from Python. Rows where that
        lookup fails (a character no token covers) take the per-token path; the first row of
        every chunk takes both paths and they must agree (or the rest of the run goes per token).
        """
        out = []
        for k, (enc, text, spans) in enumerate(zip(encodings, texts, spans_list)):
            row = None
            if self._boundary_labels and not isinstance(enc, tuple):
                row = self._run_labels(enc, len(text), spans, count=k != 0)
                if k == 0 and row is not None:
                    slow = self._labels(enc.ids, enc.offsets, spans, False)
                    if slow != row:
                        log.warning("boundary-based loss masks disagreed with per-token offsets; using per-token offsets from here on")
                        self._boundary_labels = False
                    row = slow
            if row is None:
                row = self._labels(*_ids_offsets(enc), spans, False)
            out.append(row)
        return out

    def _run_labels(self, enc, n_chars: int, spans, count: bool) -> tuple[list[int], list[int]] | None:
        ids = enc.ids
        n = len(ids)

        def first_at(pos: int) -> tuple[int, int] | None:
            # (index of the first token starting at or after character ``pos``, how many tokens
            # start before ``pos`` and end after it: those straddle the boundary)
            if pos >= n_chars:
                return n, 0
            t = enc.char_to_token(pos)  # the first token containing pos
            if t is None:
                return None
            first = t
            while first < n and enc.token_to_chars(first)[0] < pos:
                first += 1
            return first, first - t

        labels = [IGNORE_INDEX] * n
        stats = []
        for s, e in spans:
            start, end = first_at(s), first_at(e)
            if start is None or end is None:
                return None
            (a, straddling), (b, _) = start, end
            stats.append((straddling, a, b))
            if b > a:
                labels[a:b] = ids[a:b]
        if count:
            for straddling, a, b in stats:
                self.stats.straddling_tokens += straddling
                if b > a:
                    self._count_span(ids[b - 1], check_end=self.mask != "all")
        return list(ids), labels

    def _tokenize(self, texts: list[str], add_special_tokens: bool) -> list:
        """Per text, a ``tokenizers.Encoding`` or an ``(ids, character offsets)`` pair: exactly
        what ``tokenizer(texts, ...)`` returns.

        When the Rust tokenizer is configured as ``tokenizer(...)`` would configure it (no
        truncation, no padding, the same special-token splitting), it is called directly: the
        Python-side ``BatchEncoding`` conversion costs a third as much as the tokenization itself.
        """
        backend = self.tokenizer.backend_tokenizer
        if (
            backend.truncation is None
            and backend.padding is None
            and backend.encode_special_tokens == bool(getattr(self.tokenizer, "split_special_tokens", False))
        ):
            return backend.encode_batch(texts, add_special_tokens=add_special_tokens)
        enc = self.tokenizer(texts, add_special_tokens=add_special_tokens, return_offsets_mapping=True, verbose=False)
        return list(zip(enc["input_ids"], enc["offset_mapping"]))

    def encode(self, conv: Conversation) -> dict:
        """Encode one conversation. Raises :class:`DataError` when nothing is left to train."""
        return self.encode_many([conv], DataReport(strict=True))[0]

    def encode_many(self, convs: list[Conversation], report: DataReport) -> list[dict]:
        """Encode conversations in order; rows with nothing to train are dropped via ``report``.

        Returns one dict per kept row: ``input_ids``, ``labels``, ``source`` ("file:line").
        Tokenization is batched (one call into the Rust tokenizer per kind) for speed.
        """
        rendered = self._render_chunk(convs, report)
        return self._finish_chunk(rendered, self._tokenize_chunk(rendered), report)

    def _render_chunk(self, convs: list[Conversation], report: DataReport) -> list[tuple]:
        """``(conversation, text, spans, raw)`` per conversation the template could render; the
        others are bad rows, dropped with their file:line, reason and fix, or they stop the run
        (strict, or a template that fails them on every row): :func:`~sftune.data.render.drop_or_stop`."""
        rendered, failed = [], []
        for conv in convs:
            try:
                rows = self.renderings(conv)
            except RowTemplateError as e:
                failed.append((conv, e.reason, e.detail, e))
            except TemplateError:
                raise  # about the template as a whole, not this row
            except Exception as e:  # the template raised on this row (its raise_exception, a missing key)
                failed.append((conv, TEMPLATE_FAILED, template_error_text(e), e))
            else:
                self.shown.update(shown_by(conv, self.mask, self.reasoning))
                if len(rows) > 1:  # a history-rewriting template: reported as conversations -> rows
                    report.counts["conversations_split"] += 1
                    report.counts["rows_from_split_conversations"] += len(rows)
                rendered.extend((conv, *r) for r in rows)
        drop_or_stop(failed, self.shown, report)
        return rendered

    def _tokenize_chunk(self, rendered: list[tuple]) -> dict[bool, list]:
        out = {}
        for raw in (False, True):
            texts = [r[1] for r in rendered if r[3] == raw]
            if texts:
                out[raw] = self._tokenize(texts, add_special_tokens=raw)
        return out

    def _finish_chunk(self, rendered: list[tuple], encoded: dict[bool, list], report: DataReport) -> list[dict]:
        out: list[dict | None] = [None] * len(rendered)
        for raw, enc in encoded.items():
            idx = [k for k, r in enumerate(rendered) if r[3] == raw]
            if raw:
                rows = [self._labels(*_ids_offsets(e), rendered[k][2], raw) for e, k in zip(enc, idx)]
            else:
                rows = self._chat_labels(enc, [rendered[k][1] for k in idx], [rendered[k][2] for k in idx])
            for (ids, labels), k in zip(rows, idx):
                out[k] = {"input_ids": ids, "labels": labels}
        rows = []
        for (conv, *_), row in zip(rendered, out):
            src = str(conv.source) if conv.source else ""
            if not any(l != IGNORE_INDEX for l in row["labels"]):
                report.handle(DataError("no trainable tokens", conv.source))
                continue
            if len(row["input_ids"]) > self.max_length:
                row = truncate(row, self.max_length)
                self.stats.truncated += 1
            row["source"] = src
            rows.append(row)
        return rows

    def warnings(self, report: DataReport | None = None) -> list[str]:
        """Human-readable problems and facts seen while encoding (also put into the data report)."""
        w = []
        if report is not None and report.counts.get("conversations_split"):
            w.append(
                f"{report.counts['conversations_split']} conversations were split into "
                f"{report.counts['rows_from_split_conversations']} rows: the chat template rewrites earlier turns (e.g. drops "
                "old reasoning), so each assistant turn is trained once in a rendering where it is exactly what the model generates."
            )
        if self.stats.spans_without_end_token:
            w.append(
                f"{self.stats.spans_without_end_token} of {self.stats.spans} assistant turns do not end with a special "
                "end-of-turn token in this template, so the model may not learn to stop; use a template that closes "
                "turns with EOS or a special token (e.g. --template chatml)."
            )
        if self.stats.truncated:
            w.append(f"{self.stats.truncated} samples were longer than max_length={self.max_length} and were truncated.")
        if self.stats.straddling_tokens:
            w.append(
                f"{self.stats.straddling_tokens} tokens straddle a prompt/answer boundary (the tokenizer merged prompt "
                "and answer text); they are not trained."
            )
        return w


def _ids_offsets(enc) -> tuple[list[int], list]:
    return enc if isinstance(enc, tuple) else (enc.ids, enc.offsets)


def truncate(row: dict, max_length: int) -> dict:
    """Shorten a row to ``max_length`` without ever emptying its trained part.

    Policy, in order:

    1. If some trained span ends within ``max_length``, cut right after the last such span:
       whole answers are kept, none is cut mid-way.
    2. Otherwise the first answer does not fit with its prompt: trim the prompt from the
       left (keeping the context closest to the answer) and keep the answer's head, giving
       the answer at least half of ``max_length`` (or all of it, if shorter).

    >>> r = {"input_ids": list(range(10)), "labels": [-100] * 4 + [4, 5] + [-100] * 2 + [8, 9]}
    >>> truncate(r, 8)["labels"]
    [-100, -100, -100, -100, 4, 5]
    >>> r = {"input_ids": list(range(12)), "labels": [-100] * 8 + [8, 9, 10, 11]}
    >>> truncate(r, 8)
    {'input_ids': [4, 5, 6, 7, 8, 9, 10, 11], 'labels': [-100, -100, -100, -100, 8, 9, 10, 11]}
    """
    ids, labels = row["input_ids"], row["labels"]
    trained = np.asarray(labels) != IGNORE_INDEX
    # Runs of trained positions: [start, end) pairs.
    edges = np.flatnonzero(np.diff(np.concatenate([[0], trained.astype(np.int8), [0]])))
    runs = list(zip(edges[::2].tolist(), edges[1::2].tolist()))
    fitting = [e for _, e in runs if e <= max_length]
    if fitting:
        cut = max(fitting)
        return {**row, "input_ids": ids[:cut], "labels": labels[:cut]}
    s0, e0 = runs[0]
    answer = min(e0 - s0, max(max_length - s0, max_length // 2))
    prompt = max_length - answer
    lo, hi = s0 - prompt, s0 + answer
    return {**row, "input_ids": ids[lo:hi], "labels": labels[lo:hi]}
