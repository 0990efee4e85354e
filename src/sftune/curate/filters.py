"""``sftune curate filter``: drop rows whose answer is empty, parroted, repetitive, in the wrong
script, cut off, too long/short in tokens, or rejected by a user predicate.

Rules are independent and combinable (:class:`~sftune.options.curation.FilterOptions`). A row
is checked rule by rule in the order of :data:`RULE_ORDER` and dropped under the name of the
*first* rule it fails, so the counts per rule add up to the rows removed. Cheap text rules run first, then the token rules
(one batched tokenizer call), then the user predicate (arbitrary user code) last.

>>> from sftune.data.conversation import Conversation, Message
>>> rows = [Conversation.chat([Message("user", "Hi"), Message("assistant", "Hello there!")]),
...         Conversation.chat([Message("user", "Hi"), Message("assistant", "   ")])]
>>> report = CurateReport(command="filter")
>>> kept = filter_conversations(rows, FilterOptions(), report)
>>> len(kept), dict(report.dropped)
(1, {'empty_answer': 1})
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Callable

from ..config import ConfigError
from ..data.conversation import Conversation
from ..data.report import DataError
from ..options.curation import SCRIPTS, FilterOptions, lang_scripts
from .io import CurateReport, where
from .text import answer_text, last_user_text, ngrams, normalize, strip_code_blocks, words

#: The order rules are checked in; a row is counted under the first rule it fails.
RULE_ORDER = (
    "empty_answer", "repeats_prompt", "repetition", "lang", "truncated",
    "min_tokens", "max_tokens", "min_answer_tokens", "max_answer_tokens", "predicate",
)

#: The rules' settings are an option group (flags, YAML, forms); ``FilterRules`` is its older name.
FilterRules = FilterOptions


# ---- script share ---------------------------------------------------------------------------
@lru_cache(maxsize=65536)
def script_of(ch: str) -> str | None:
    """The script of a letter (from its Unicode name), ``None`` for non-letters.

    >>> script_of("a"), script_of("好"), script_of("Я"), script_of("1")
    ('latin', 'han', 'cyrillic', None)
    """
    if not unicodedata.category(ch).startswith("L"):
        return None
    name = unicodedata.name(ch, "")
    if name.startswith("CJK "):
        return "han"
    for s in SCRIPTS:
        if s.upper() in name:
            return s
    return "other"


def script_share(text: str, scripts: set[str]) -> float | None:
    """Share of the letters (outside fenced code) written in ``scripts``; ``None`` when there are no letters.

    >>> script_share("你好, world", {"han"})
    0.2857142857142857
    """
    letters = [s for s in map(script_of, strip_code_blocks(text)) if s is not None]
    if not letters:
        return None
    return sum(s in scripts for s in letters) / len(letters)


# ---- truncation -----------------------------------------------------------------------------
# Sentence ends in Latin, CJK (full-width), Arabic, Devanagari; closing brackets end a construct.
_TERMINAL = set(".!?;…。！？；｡؟۔।」』）)]}】》>*_`|~")
_CLOSING_QUOTES = "\"'”’»›"
_LIST_OR_TABLE = re.compile(r"^\s*([-*+•]|\d+[.)]|#+|\|)\s?")


def truncation_reason(answer: str, min_words: int = 5) -> str | None:
    """Why an answer looks cut off mid-sentence, or ``None`` when it looks complete.

    Complete: ends with terminal punctuation (incl. CJK 。！？), a closing bracket or a symbol or
    emoji; ends with a closed code block; its last line is a list item, table row or heading; or it
    is shorter than ``min_words`` words (one-word answers such as "Paris" or "42" are fine).

    >>> truncation_reason("The capital of France is Paris, which is also"), truncation_reason("它是巴黎。")
    ('no terminal punctuation', None)
    >>> truncation_reason("Here:\\n```python\\nprint(1)")
    'unclosed code block'
    """
    text = answer.rstrip()
    if text.count("```") % 2 == 1:
        return "unclosed code block"
    if text.endswith("```") or len(words(text)) < min_words:
        return None
    last_line = text.rsplit("\n", 1)[-1]
    if _LIST_OR_TABLE.match(last_line):
        return None
    last = text.rstrip(_CLOSING_QUOTES)[-1:] or text[-1]
    if last in _TERMINAL or unicodedata.category(last).startswith("S"):
        return None
    return "no terminal punctuation"


# ---- the rules ------------------------------------------------------------------------------
def repetition_share(tokens: list[str], n: int) -> float:
    """Share of n-gram occurrences that repeat an earlier one (0 = none repeats).

    >>> repetition_share("i am happy i am happy i am happy".split(), 3)
    0.5714285714285714
    """
    grams = ngrams(tokens, n)
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def _prompt_overlap(answer: str, prompt: str) -> float:
    a = set(ngrams(words(answer), 3))
    if not a:
        return 0.0
    return len(a & set(ngrams(words(prompt), 3))) / len(a)


def text_rule_failure(conv: Conversation, rules: FilterOptions) -> tuple[str, str] | None:
    """The first text rule the row fails, as ``(rule, detail)``; ``None`` when it passes them all."""
    answer = answer_text(conv)
    if rules.empty_answer and (answer is None or not answer.strip()):
        return "empty_answer", "no answer" if answer is None else "blank answer"
    if answer is None:
        return None
    if rules.repeats_prompt is not None and conv.kind != "text":
        prompt = last_user_text(conv)
        na = normalize(answer)
        if na and na == normalize(prompt):
            return "repeats_prompt", "answer equals the prompt"
        share = _prompt_overlap(answer, prompt)
        if share >= rules.repeats_prompt:
            return "repeats_prompt", f"{share:.0%} of the answer's 3-grams are in the prompt"
    if rules.repetition is not None:
        share = repetition_share(words(answer), rules.repetition_ngram)
        if share >= rules.repetition:
            return "repetition", f"{share:.0%} repeated {rules.repetition_ngram}-grams"
    if rules.lang is not None:
        share = script_share(answer, lang_scripts(rules.lang))
        if share is not None and share < rules.min_lang_share:
            return "lang", f"{share:.0%} of letters in {rules.lang}"
    if rules.truncated:
        why = truncation_reason(answer)
        if why:
            return "truncated", why
    return None


def token_lengths(
    convs: list[Conversation], tokenizer, template: str, batch: int = 1000, *, template_kwargs: dict | None = None,
    reasoning: str = "keep",
) -> tuple[list[int], list[int]]:
    """(whole-conversation tokens, answer tokens) per row, the whole conversation counted as training
    tokenizes it (before ``max_length``): a chat row rendered with ``template`` (a resolved chat
    template) from ``conv.to_messages(form)`` (the template's :class:`~sftune.data.toolcalls.CallForm`)
    with its ``tools``, ``template_kwargs`` and the ``reasoning`` policy, so tool calls, tool results,
    tool schemas and reasoning count; a raw prompt/completion or text row with the tokenizer's
    special tokens and the EOS training appends.
    """
    from ..data.render import apply_reasoning
    from ..data.templates import render
    from ..data.toolcalls import template_call_form

    form = template_call_form(tokenizer, template, template_kwargs)

    def rendered(c: Conversation) -> str:
        c = apply_reasoning(c, reasoning)
        return render(tokenizer, template, c.to_messages(form), tools=c.tools, template_kwargs=template_kwargs)

    eos = tokenizer.eos_token_id
    totals: list[int] = []
    answers: list[int] = []
    for i in range(0, len(convs), batch):
        chunk = convs[i : i + batch]
        lengths = [0] * len(chunk)
        # as sftune.data.tokenize encodes them: templates write their own special tokens; raw
        # rows get the tokenizer's and end with EOS
        for raw in (False, True):
            idx = [k for k, c in enumerate(chunk) if (c.kind != "chat") == raw]
            texts = ["".join(m.content for m in chunk[k].messages) if raw else rendered(chunk[k]) for k in idx]
            for k, ids in zip(idx, tokenizer(texts, add_special_tokens=raw)["input_ids"] if texts else []):
                lengths[k] = len(ids) + (raw and eos is not None and (not ids or ids[-1] != eos))
        totals.extend(lengths)
        enc = tokenizer([answer_text(c) or "" for c in chunk], add_special_tokens=False)["input_ids"]
        answers.extend(len(x) for x in enc)
    return totals, answers


def filter_conversations(
    convs: list[Conversation],
    rules: FilterOptions,
    report: CurateReport,
    *,
    tokenizer=None,
    template: str | None = None,
    template_kwargs: dict | None = None,
    reasoning: str = "keep",
) -> list[Conversation]:
    """Return the rows that pass every rule (input order kept); drops are counted per rule in ``report``.

    ``template`` is the chat template as ``--template`` takes it (none: the tokenizer's own),
    resolved once here when a token-length rule needs the rendered conversation;
    ``template_kwargs`` and ``reasoning`` are training's (:func:`token_lengths`).
    """
    if rules.needs_tokenizer and tokenizer is None:
        raise ConfigError("token-length rules need the model's tokenizer: pass --model NAME (default: the bundled model)")
    predicate: Callable | None = None
    if rules.predicate:
        from .plugins import load_callable

        predicate = load_callable(rules.predicate, "--predicate")

    report.seen(len(convs))
    report.details.setdefault("rules", {k: v for k, v in rules.model_dump().items() if v not in (None, False)})

    survivors: list[tuple[int, Conversation]] = []
    for i, c in enumerate(convs):
        failed = text_rule_failure(c, rules)
        if failed:
            report.drop(failed[0], where(c, i), failed[1])
        else:
            survivors.append((i, c))

    if rules.needs_tokenizer and survivors:
        from ..data.templates import resolve_template

        totals, answers = token_lengths(
            [c for _, c in survivors], tokenizer, resolve_template(template, tokenizer, warn=False),
            template_kwargs=template_kwargs, reasoning=reasoning,
        )
        bounds = [
            ("min_tokens", totals, lambda n, b: n < b), ("max_tokens", totals, lambda n, b: n > b),
            ("min_answer_tokens", answers, lambda n, b: n < b), ("max_answer_tokens", answers, lambda n, b: n > b),
        ]
        kept = []
        for j, (i, c) in enumerate(survivors):
            for name, lengths, fails in bounds:
                bound = getattr(rules, name)
                if bound is not None and fails(lengths[j], bound):
                    report.drop(name, where(c, i), f"{lengths[j]} tokens, bound {bound}")
                    break
            else:
                kept.append((i, c))
        survivors = kept

    if predicate is not None:
        kept = []
        for i, c in survivors:
            try:
                ok = predicate(c)
            except Exception as e:  # a bug in the user's rule: stop and say where, don't silently drop
                raise DataError(
                    f"--predicate {rules.predicate} raised {type(e).__name__}: {e}", where(c, i),
                    fix="fix the predicate; it receives a sftune.data.conversation.Conversation and returns True to keep the row",
                ) from e
            if ok:
                kept.append((i, c))
            else:
                report.drop("predicate", where(c, i), f"{rules.predicate} returned {ok!r}")
        survivors = kept

    out = [c for _, c in survivors]
    report.keep(len(out))
    return out
