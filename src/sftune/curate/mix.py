"""``sftune curate mix``: several inputs mixed into one file with target shares or weights.

The mixing itself is :func:`sftune.data.mixing.mix`, the function training uses when it is given
several ``--data`` sources, with the same ``share``/``weight`` options and the same seed (the
config's ``seed``, 42 by default). So ``sftune curate mix --data a.jsonl,share=0.8 --data
b.jsonl,share=0.2`` writes the rows a training run with those two ``--data`` flags would mix (as
conversations: training mixes after tokenising, so rows that preparation drops, e.g. ones too
long for ``max_length``, are in this file but not in training).

Conversations become a ``datasets.Dataset`` of canonical message rows for mixing
(:func:`conversations_to_dataset`) and come back unchanged (:func:`dataset_to_conversations`).
A source that is under-sampled leaves rows out: they are counted as ``not_sampled`` in the
report, with examples; over-sampled rows (whole repeats first, then a random remainder) are
counted in ``details.sources[i].repeated_rows``.

>>> a = [Conversation.chat([Message("user", f"q{i}"), Message("assistant", f"a{i}")]) for i in range(8)]
>>> b = [Conversation.text(f"t{i}") for i in range(4)]
>>> report = CurateReport(command="mix")
>>> rows = mix_conversations([a, b], shares=[None, 0.5], seed=0, report=report)
>>> len(rows), sum(c.kind == "text" for c in rows), report.kept
(16, 8, 16)
"""

from __future__ import annotations

import dataclasses
import json

from ..config import ConfigError
from ..data.conversation import Conversation, Message, Source
from ..data.report import EXAMPLES_PER_REASON
from .io import CurateReport

#: Arrow schema of a conversation row. ``kind`` keeps chat/completion/text apart (the
#: ``prompt``/``completion`` and ``text`` roles live in ``messages``), ``row`` is the position in
#: the concatenated inputs so a mixed row can be traced back (and unused rows counted).
#: ``messages`` and ``tools`` are JSON text, not Arrow structs: tool-call arguments are a string
#: in one row and an object in the next, tool schemas and a message's other keys differ per row,
#: and a struct column would give every row every key (as null) while a template must see a key
#: the data lacks as absent. JSON of each message's own fields gives back the same ``Message``.
_FEATURES = None
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Message)}


def _features():
    global _FEATURES
    if _FEATURES is None:
        import datasets

        _FEATURES = datasets.Features({
            "kind": datasets.Value("string"), "messages": datasets.Value("string"), "tools": datasets.Value("string"),
            "source": datasets.Value("string"), "meta": datasets.Value("string"), "row": datasets.Value("int64"),
        })
    return _FEATURES


def _message_json(m: Message) -> dict:
    """A message's fields that differ from their defaults (``role`` and ``content`` always).

    >>> _message_json(Message("assistant", "", tool_calls=[{"id": "c1"}], content_null=True))
    {'role': 'assistant', 'content': '', 'tool_calls': [{'id': 'c1'}], 'content_null': True}
    >>> _message_json(Message("tool", "21", tool_call_id="c1"))
    {'role': 'tool', 'content': '21', 'tool_call_id': 'c1'}
    """
    d = dataclasses.asdict(m)
    return {k: v for k, v in d.items() if k in ("role", "content") or v != _DEFAULTS[k]}


def conversations_to_dataset(convs: list[Conversation], start: int = 0):
    """One row per conversation: ``kind``, ``messages`` (JSON of each message's fields), ``tools``
    (JSON, or None), ``source``, ``meta`` (JSON), ``row``; :func:`dataset_to_conversations` gives
    the conversations back equal, tool calls, tool results and reasoning included.

    >>> ds = conversations_to_dataset([Conversation.completion("1+1=", "2")])
    >>> ds[0]["kind"], [m["role"] for m in json.loads(ds[0]["messages"])], ds[0]["row"]
    ('completion', ['prompt', 'completion'], 0)
    """
    import datasets

    def dumps(value) -> str:
        return json.dumps(value, ensure_ascii=False)

    cols = {
        "kind": [c.kind for c in convs],
        "messages": [dumps([_message_json(m) for m in c.messages]) for c in convs],
        "tools": [None if c.tools is None else dumps(c.tools) for c in convs],
        "source": [None if c.source is None else dumps([c.source.path, c.source.line, c.source.index]) for c in convs],
        "meta": [dumps(c.meta) if c.meta else None for c in convs],
        "row": list(range(start, start + len(convs))),
    }
    return datasets.Dataset.from_dict(cols, features=_features())


def dataset_to_conversations(ds) -> list[Conversation]:
    """The inverse of :func:`conversations_to_dataset` (``row`` is dropped)."""
    out = []
    for r in ds:
        src = None if r["source"] is None else Source(*json.loads(r["source"]))
        msgs = [Message(**m) for m in json.loads(r["messages"])]
        tools = None if r["tools"] is None else json.loads(r["tools"])
        meta = json.loads(r["meta"]) if r["meta"] else {}
        out.append(Conversation(messages=msgs, kind=r["kind"], source=src, meta=meta, tools=tools))
    return out


def mix_conversations(
    sources: list[list[Conversation]],
    weights: list[float | None] | None = None,
    shares: list[float | None] | None = None,
    *,
    seed: int = 42,
    report: CurateReport | None = None,
    names: list[str] | None = None,
) -> list[Conversation]:
    """Mix lists of conversations with :func:`sftune.data.mixing.mix`; returns the mixed, shuffled rows.

    ``report`` (optional) gets rows in, rows out, ``not_sampled`` drops with examples and, in
    ``details``, the mixing info per source (rows in, rows out, requested and realised share).
    """
    from ..data.mixing import mix

    n = len(sources)
    names = names or [f"source {i + 1}" for i in range(n)]
    weights = list(weights) if weights is not None else [None] * n
    shares = list(shares) if shares is not None else [None] * n
    if not (len(weights) == len(shares) == len(names) == n):
        raise ConfigError(f"mix: {n} sources but {len(weights)} weights, {len(shares)} shares, {len(names)} names")
    for name, convs in zip(names, sources):
        if not convs:
            raise ConfigError(f"mix: {name} has no usable rows (see the reading report); remove it or fix its rows")
    parts, start = [], 0
    for convs in sources:
        parts.append(conversations_to_dataset(convs, start))
        start += len(convs)
    try:
        mixed, info = mix(parts, weights, shares, seed=seed)
    except ValueError as e:  # the shares/weights do not make a mixture: say which files
        raise ConfigError(f"mix of {names}: {e}") from None
    rows = dataset_to_conversations(mixed)

    if report is not None:
        used = [0] * start
        for r in mixed["row"]:
            used[r] += 1
        report.seen(start)
        offset = 0
        for i, (name, convs, src_info) in enumerate(zip(names, sources, info["sources"])):
            counts = used[offset : offset + len(convs)]
            unused = [j for j, c in enumerate(counts) if c == 0]
            for j in unused:
                c = convs[j]
                where = str(c.source) if c.source is not None else f"{name} row {j}"
                # Not an error even in strict mode: leaving rows out is what a share below the
                # source's natural size asks for. Counted like a drop so the report adds up.
                report.dropped["not_sampled"] += 1
                if len(report.examples["not_sampled"]) < EXAMPLES_PER_REASON:
                    report.examples["not_sampled"].append(f"{where} ({name} under-sampled to {src_info['rows_out']} of {len(convs)} rows)")
            src_info.update({"name": name, "unused_rows": len(unused), "repeated_rows": sum(1 for c in counts if c > 1)})
            offset += len(convs)
        report.keep(len(rows))
        extra = len(rows) - (start - report.dropped["not_sampled"])
        if extra > 0:
            report.notes.append(f"over-sampling: {extra} extra copies of rows were written (see details.mixture)")
        report.details["mixture"] = info
    return rows
