"""Bad input gets a clear answer and loses nothing.

Every step that can reject a row (reading, validating, truncating, curating) reports it to a
:class:`DataReport`. In strict mode the first problem raises :class:`DataError` naming the file,
the line, the field and the fix; otherwise the row is skipped and counted per reason, with the
first few locations kept so a person can go and look.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SftuneError
from .conversation import Source

#: How many example locations to keep per reason.
EXAMPLES_PER_REASON = 5


class DataError(SftuneError, ValueError):
    """A problem with the user's data, with where it is and how to fix it."""

    def __init__(self, message: str, source: Source | str | None = None, field: str | None = None, fix: str | None = None):
        self.reason = message
        self.source = source
        self.field = field
        self.fix = fix
        where = f"{source}: " if source is not None else ""
        what = f"field '{field}': " if field else ""
        hint = f"\n  fix: {fix}" if fix else ""
        super().__init__(f"{where}{what}{message}{hint}")


@dataclass
class DataReport:
    """Counts of rows kept and dropped, per input file and per reason."""

    strict: bool = False
    rows_in: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=lambda: defaultdict(list))
    notes: list = field(default_factory=list)
    # Kept rows with something worth a look (e.g. a call naming a tool absent from `tools`),
    # per reason, with the first few locations; strict mode raises instead.
    warnings: Counter = field(default_factory=Counter)
    warning_examples: dict = field(default_factory=lambda: defaultdict(list))
    # Counters of the encoding step, e.g. how many conversations a history-rewriting template
    # split into how many rows (see sftune.data.tokenize).
    counts: Counter = field(default_factory=Counter)

    def seen(self, n: int = 1) -> None:
        self.rows_in += n

    def keep(self, n: int = 1) -> None:
        self.kept += n

    def drop(self, reason: str, source: Source | str | None = None, detail: str | None = None) -> None:
        """Record a dropped row. In strict mode this raises instead."""
        if self.strict:
            raise DataError(detail or reason, source)
        self.dropped[reason] += 1
        if len(self.examples[reason]) < EXAMPLES_PER_REASON:
            self.examples[reason].append(f"{source}" + (f" ({detail})" if detail else ""))

    def handle(self, err: DataError) -> None:
        """Record a :class:`DataError` raised while reading a row (re-raised in strict mode)."""
        if self.strict:
            raise err
        self.dropped[err.reason] += 1
        if len(self.examples[err.reason]) < EXAMPLES_PER_REASON:
            self.examples[err.reason].append(str(err.source) if err.source is not None else "?")

    def warn(self, reason: str, source: Source | str | None = None, fix: str | None = None) -> None:
        """Record a kept row that deserves a look. In strict mode this raises instead."""
        if self.strict:
            raise DataError(reason, source, fix=fix)
        self.warnings[reason] += 1
        if len(self.warning_examples[reason]) < EXAMPLES_PER_REASON:
            self.warning_examples[reason].append(str(source) if source is not None else "?")

    def add(self, part: DataReport) -> DataReport:
        """Add the report of a later piece of the same input (a worker's share): counts add up,
        and each reason keeps its first :data:`EXAMPLES_PER_REASON` locations in input order.

        >>> a, b = DataReport(), DataReport()
        >>> a.seen(2); a.drop("empty answer", "x.jsonl:2"); b.seen(3); b.drop("empty answer", "x.jsonl:9"); b.counts["n"] += 1
        >>> r = a.add(b); r.rows_in, dict(r.dropped), r.examples["empty answer"], dict(r.counts)
        (5, {'empty answer': 2}, ['x.jsonl:2', 'x.jsonl:9'], {'n': 1})
        """
        self.rows_in += part.rows_in
        self.kept += part.kept
        self.counts.update(part.counts)
        self.notes.extend(part.notes)
        add_counted(self.dropped, self.examples, part.dropped, part.examples)
        add_counted(self.warnings, self.warning_examples, part.warnings, part.warning_examples)
        return self

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    def to_dict(self) -> dict:
        return {
            "rows_in": self.rows_in,
            "kept": self.kept,
            "dropped": self.n_dropped,
            "dropped_by_reason": dict(self.dropped),
            "examples": {k: list(v) for k, v in self.examples.items()},
            "notes": list(self.notes),
            "warnings_by_reason": dict(self.warnings),
            "warning_examples": {k: list(v) for k, v in self.warning_examples.items()},
            "counts": dict(self.counts),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "DataReport":
        r = cls(rows_in=d["rows_in"], kept=d["kept"], notes=list(d.get("notes", [])))
        r.dropped.update(d.get("dropped_by_reason", {}))
        for k, v in d.get("examples", {}).items():
            r.examples[k] = list(v)
        r.warnings.update(d.get("warnings_by_reason", {}))
        for k, v in d.get("warning_examples", {}).items():
            r.warning_examples[k] = list(v)
        r.counts.update(d.get("counts", {}))
        return r

    def summary(self) -> str:
        lines = [f"rows read: {self.rows_in}   kept: {self.kept}   dropped: {self.n_dropped}"]
        for reason, n in self.dropped.most_common():
            where = ", ".join(self.examples.get(reason, []))
            lines.append(f"  dropped {n:>6} × {reason}" + (f"   (e.g. {where})" if where else ""))
        for reason, n in self.warnings.most_common():
            where = ", ".join(self.warning_examples.get(reason, []))
            lines.append(f"  warning {n:>6} × {reason}" + (f"   (e.g. {where})" if where else ""))
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def add_counted(counter: Counter, examples: dict, their_counter: Counter, their_examples: dict) -> None:
    """Add per-reason counts, keeping at most :data:`EXAMPLES_PER_REASON` examples per reason (ours first)."""
    counter.update(their_counter)
    for reason, where in their_examples.items():
        room = EXAMPLES_PER_REASON - len(examples[reason])
        examples[reason].extend(where[: max(room, 0)])
