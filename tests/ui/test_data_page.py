"""The Data page's preview: rows as read, the kept/dropped report and the mask, from the library."""

from __future__ import annotations

import json
import shutil

import pytest

from sftune.ui.access import AccessError, PathGuard
from sftune.ui.data_page import DEMO_FILE, data_sources, preview


def test_demo_data_preview(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SFTUNE_CACHE", str(tmp_path / "cache"))
    stats, report, rows, marked, index = preview(PathGuard(), str(tiny_model_dir), str(DEMO_FILE), None,
                                                 {"mask": "assistant", "max_length": 256}, 1)
    assert index == 1 and "trained tokens" in stats and "dropped: 0" in report
    assert len(rows) == 20 and rows[0][1] == "chat" and rows[0][2].startswith("user: ")
    trained = "".join(p for p, label in marked if label == "trained")
    untrained = "".join(p for p, label in marked if label is None)
    answer = json.loads(DEMO_FILE.read_text().splitlines()[1])["messages"][-1]["content"]
    assert answer in trained and "user" in untrained and "<|im_end|>" in trained


def test_dropped_rows_are_reported_with_reasons(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SFTUNE_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]})
                 + "\nnot json\n" + json.dumps({"messages": [{"role": "user", "content": "no answer"}]}) + "\n")
    shutil.copytree(tiny_model_dir, tmp_path / "model")  # inside the workdir
    _, report, rows, marked, _ = preview(PathGuard(tmp_path), "model", "d.jsonl", None, {})
    assert "kept: 1" in report and "dropped: 2" in report and "d.jsonl:2" in report
    assert len(rows) == 1 and marked


def test_sources_are_confined(tmp_path):
    g = PathGuard(tmp_path)
    with pytest.raises(AccessError, match="outside the workdir"):
        data_sources(g, "../x.jsonl", None)
    with pytest.raises(ValueError, match="Load demo data"):
        data_sources(g, "  \n", None)
    assert data_sources(g, "", ["/tmp/gradio/upload.jsonl"]) == ["/tmp/gradio/upload.jsonl"]
