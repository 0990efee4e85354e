"""Generated chat rows for the streaming tests (and benchmarks/stream_memory.py), with broken rows at known lines."""

from __future__ import annotations

import json
from pathlib import Path


def chat(i: int) -> dict:
    turns = [{"role": "user", "content": f"What is {i} times 3?"}, {"role": "assistant", "content": f"{i} times 3 is {3 * i}." + " Indeed." * (i % 7)}]
    if i % 5 == 0:
        turns += [{"role": "user", "content": "And plus one?"}, {"role": "assistant", "content": f"{3 * i + 1}."}]
    return {"messages": turns}


def write_rows(path: Path, n: int, bad: dict[int, str] | None = None) -> Path:
    """``n`` chat rows, one per line, written as they are made; ``bad`` replaces lines (1-based) with broken rows."""
    bad = bad or {}
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write((bad.get(i + 1) or json.dumps(chat(i))) + "\n")
    return path


BAD = {
    3: '{"messages": [',  # malformed JSON
    7: json.dumps({"messages": [{"role": "user", "content": "no answer"}]}),
    11: json.dumps({"instruction": "wrong layout"}),
    700: json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}),
}
