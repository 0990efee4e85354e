"""200,000 generated rows through training with --streaming: memory stays flat; the in-memory path grows with the data.

Both runs are benchmarks/stream_memory.py's, each in its own process (peak RSS by VmHWM: the
child's ru_maxrss would include this pytest process's RSS, which made this test fail late in CI);
benchmarks/README.md has the numbers measured on this project's CPU.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from streaming_rows import BAD, write_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import stream_memory  # noqa: E402

ROWS = 200_000


@pytest.mark.slow
def test_200k_rows_stream_through_training_with_flat_memory(tiny_model_dir, tmp_path):
    data = write_rows(tmp_path / "train.jsonl", ROWS, BAD)
    memory, stream = stream_memory.measure(("memory", "stream"), str(tiny_model_dir), str(data), str(tmp_path), steps=3)
    # The whole file went through the streamed data stage, with the same rows kept and dropped.
    assert stream["rows"] == memory["rows"] == ROWS
    assert stream["kept"] == memory["kept"] == ROWS - len(BAD) and stream["dropped"] == len(BAD)
    # Flat: reading the last rows costs no more memory than reading the first ones.
    rss = [mb for _, mb in stream["rss_samples"]]
    assert len(rss) >= 10 and max(rss) - rss[0] < 48, stream["rss_samples"]
    # Holding 200,000 samples is what the in-memory path pays and streaming does not.
    shown = json.dumps({"stream": stream, "memory": memory}, indent=1)  # whole: pytest would cut the dicts short
    assert stream["growth_mb"] < memory["growth_mb"] / 2, shown
    assert memory["peak_mb"] - stream["peak_mb"] > 300, shown
