"""Rows for the curation tests, built in the test (imported as `curate_helpers`)."""

from __future__ import annotations

import json
from pathlib import Path

from sftune.data.conversation import Conversation, Message, Source


def chat(prompt: str, answer: str | None = None, line: int | None = None, system: str | None = None) -> Conversation:
    msgs = [Message("system", system)] if system else []
    msgs.append(Message("user", prompt))
    if answer is not None:
        msgs.append(Message("assistant", answer))
    return Conversation.chat(msgs, source=Source("test.jsonl", line=line) if line else None)


def write_jsonl(path: Path, convs: list[Conversation]) -> Path:
    path.write_text("".join(json.dumps(c.to_dict(), ensure_ascii=False) + "\n" for c in convs), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
