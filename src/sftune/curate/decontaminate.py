"""``sftune curate decontaminate``: drop training rows that overlap an evaluation set.

A training row is contaminated when its prompt or its answer shares an n-gram of at least ``ngram``
words (default 13, as in the GPT-3 paper's overlap analysis) with any evaluation row (prompt or
answer). Words are casefolded with punctuation dropped, and each CJK character counts as a word,
so for Chinese/Japanese the n-gram is ``ngram`` characters.

Evaluation fields shorter than ``ngram`` words but at least ``min_short`` words long are matched
as a whole (a 9-word question copied verbatim into the training set is contamination too);
shorter ones (a one-word answer such as "Paris") are ignored, or everything would match.

N-grams are kept as 64-bit hashes (Python's tuple hash, fixed within one run) to keep the index
small; a false match would need a 64-bit collision.

>>> from sftune.data.conversation import Conversation, Message
>>> q = "What is the name of the tallest mountain on the continent of Africa today"
>>> ev = [Conversation.chat([Message("user", q), Message("assistant", "Kilimanjaro.")])]
>>> tr = [Conversation.chat([Message("user", "Tell me: " + q + "?"), Message("assistant", "Kilimanjaro.")]),
...       Conversation.chat([Message("user", "What is 2+2?"), Message("assistant", "4")])]
>>> report = CurateReport(command="decontaminate")
>>> [c.messages[0].content for c in decontaminate(tr, ev, report)]
['What is 2+2?']
>>> report.details["eval_rows_hit"]
1
"""

from __future__ import annotations

from collections import defaultdict

from ..data.conversation import Conversation
from ..options.curation import DecontaminateOptions
from .io import CurateReport, where
from .text import answer_text, prompt_text, words


# The options live with the other option groups (sftune.options.DecontaminateOptions).
DecontamOptions = DecontaminateOptions


class EvalIndex:
    """Hashes of every evaluation n-gram (and of whole short fields) -> the evaluation rows holding it."""

    def __init__(self, evals: list[Conversation], opts: DecontamOptions):
        self.n = opts.ngram
        self.grams: dict[int, list[int]] = defaultdict(list)
        self.short_lengths: set[int] = set()
        for e, conv in enumerate(evals):
            seen: set[int] = set()
            for text in (prompt_text(conv), answer_text(conv) or ""):
                w = words(text)
                if len(w) >= self.n:
                    hashes = {hash(tuple(w[i : i + self.n])) for i in range(len(w) - self.n + 1)}
                elif len(w) >= opts.min_short:
                    hashes = {hash(tuple(w))}
                    self.short_lengths.add(len(w))
                else:
                    continue
                for h in hashes - seen:
                    self.grams[h].append(e)
                seen |= hashes

    def hits(self, text: str) -> tuple[set[int], str | None]:
        """Evaluation rows sharing an n-gram with ``text``, and the first shared n-gram (for the report)."""
        w = words(text)
        found: set[int] = set()
        first = None
        for n in (self.n, *sorted(self.short_lengths)):
            for i in range(len(w) - n + 1):
                gram = tuple(w[i : i + n])
                rows = self.grams.get(hash(gram))
                if rows:
                    found.update(rows)
                    first = first or " ".join(gram)
        return found, first


def decontaminate(
    train: list[Conversation], evals: list[Conversation], report: CurateReport, opts: DecontamOptions | None = None
) -> list[Conversation]:
    """Training rows that share no long n-gram with ``evals`` (input order kept).

    ``report.details`` lists every evaluation row that was hit, with how many training rows hit it.
    """
    opts = opts or DecontamOptions()
    index = EvalIndex(evals, opts)
    report.seen(len(train))
    hit_by: dict[int, list[int]] = defaultdict(list)
    kept: list[Conversation] = []
    for i, conv in enumerate(train):
        fields = []
        if opts.fields in ("prompt", "both"):
            fields.append(("prompt", prompt_text(conv)))
        if opts.fields in ("answer", "both"):
            fields.append(("answer", answer_text(conv) or ""))
        rows: set[int] = set()
        detail = None
        for name, text in fields:
            found, gram = index.hits(text)
            if found and detail is None:
                e = min(found)
                detail = f"{name} shares {gram!r} with eval {where(evals[e], e)}"
            rows |= found
        if rows:
            report.drop("contaminated", where(conv, i), detail)
            for e in rows:
                hit_by[e].append(i)
        else:
            kept.append(conv)
    report.keep(len(kept))
    report.details.update(
        {
            "options": vars(opts).copy(),
            "eval_rows": len(evals),
            "eval_rows_hit": len(hit_by),
            "hits": [
                {
                    "eval_row": where(evals[e], e),
                    "eval_prompt": prompt_text(evals[e])[:200],
                    "train_rows": len(ts),
                    "train_examples": [where(train[t], t) for t in ts[:5]],
                }
                for e, ts in sorted(hit_by.items(), key=lambda kv: (-len(kv[1]), kv[0]))
            ],
        }
    )
    return kept
