"""Reading inputs, writing curated JSONL, and the curation report.

Every curation command reads any supported input through ``sftune.data.readers``, writes JSONL in
the canonical form (``Conversation.to_dict()``: ``{"messages": [...]}`` for chat rows), never
touches its input files, and saves a report next to the output:
``OUTPUT.jsonl`` -> ``OUTPUT.report.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..atomic import atomic_file
from ..config import ConfigError, DataSource
from ..data.conversation import Conversation
from ..data.report import DataReport, add_counted


@dataclass
class CurateReport(DataReport):
    """A :class:`DataReport` plus what a curation step wants to say beyond counts.

    ``details`` holds step-specific findings (which evaluation rows were hit, which row each
    duplicate repeats, the options used); ``command`` names the step.
    """

    command: str = ""
    details: dict = field(default_factory=dict)

    def merge(self, reading: DataReport) -> CurateReport:
        """Fold in the report of reading the input: rows the reader could not use were never handed
        to the step, so they count as read and dropped (under the reader's reasons and examples).

        >>> r = CurateReport(command="dedup"); r.seen(3); r.keep(2); r.drop("duplicate", "a.jsonl:3")
        >>> reading = DataReport(); reading.drop("no_answer", "a.jsonl:4"); reading.notes.append("2 columns renamed")
        >>> r.merge(reading).to_dict()["dropped_by_reason"], r.rows_in, r.notes
        ({'duplicate': 1, 'no_answer': 1}, 4, ['2 columns renamed'])
        """
        self.rows_in += reading.n_dropped
        add_counted(self.dropped, self.examples, reading.dropped, reading.examples)
        self.notes.extend(reading.notes)
        return self

    def to_dict(self) -> dict:
        return {"command": self.command, **super().to_dict(), "details": self.details}

    def summary(self) -> str:
        head = f"sftune curate {self.command}: " if self.command else ""
        return head + super().summary()


def report_path(output: str | Path) -> Path:
    """``out/clean.jsonl`` -> ``out/clean.report.json`` (the report always sits beside the output)."""
    p = Path(output)
    return p.with_name((p.stem if p.suffix == ".jsonl" else p.name) + ".report.json")


def check_output(output: str | Path, inputs: Iterable[str | Path]) -> Path:
    """Refuse to write over an input file (curation never modifies its input) or into a folder."""
    out = Path(output)
    if out.is_dir():
        raise ConfigError(f"--output {output}: is a folder; give a file name such as {out / 'curated.jsonl'}")
    for src in inputs:
        p = Path(src)
        same = out.resolve() == p.resolve() or (p.exists() and out.exists() and os.path.samefile(p, out))
        if same:
            raise ConfigError(
                f"--output {output} is also an input: curation never modifies its input. Write to a new file, "
                "e.g. --output " + str(out.with_name(out.stem + ".curated.jsonl"))
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def conv_row(conv: Conversation, meta: dict | None = None) -> dict:
    """The canonical JSON row; ``meta`` (when given) is stored under the ``meta`` key."""
    row = conv.to_dict()
    if meta:
        row["meta"] = meta
    return row


def write_jsonl(rows: Iterable[dict], path: str | Path) -> int:
    """Write rows to ``path`` atomically (temp file + rename: a crash never leaves half a file)."""
    n = 0
    with atomic_file(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_conversations(convs: Iterable[Conversation], path: str | Path) -> int:
    return write_jsonl((conv_row(c) for c in convs), path)


def save_report(report: CurateReport, output: str | Path) -> Path:
    p = report_path(output)
    report.save(p)
    return p


def as_source(src: str | Path | DataSource) -> DataSource:
    return src if isinstance(src, DataSource) else DataSource(path=str(src))


def read_sources(
    sources: Iterable[str | Path | DataSource],
    report: DataReport,
    *,
    require_answer: bool = True,
    default_format: str = "auto",
    system_prompt: str | None = None,
) -> list[Conversation]:
    """Read every source into conversations (rows that cannot be read are counted in ``report``)."""
    from ..data.readers import read_conversations

    convs: list[Conversation] = []
    for src in sources:
        convs.extend(
            read_conversations(
                as_source(src), report, default_format=default_format, system_prompt=system_prompt,
                require_answer=require_answer,
            )
        )
    return convs


def where(conv: Conversation, i: int) -> str:
    """A human pointer to a row: its file and line when known, else its position in the input."""
    return str(conv.source) if conv.source is not None else f"row {i}"
