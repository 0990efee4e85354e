"""The whole app in a real browser (headless Debian Chromium driven by Playwright): demo data and its
mask, a 2-step training run with its loss plot, then a streamed chat with the result.

Needs: ``apt-get install -y chromium`` and ``pip install playwright 'gradio>=5'`` (Playwright's own
browser download is not used). Screenshots go to ``$SFTUNE_UI_SCREENSHOTS`` (default: the test's
tmp folder); the Train page's is the README's docs/ui-train.png.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from browser_flow import CHROMIUM, walk  # noqa: E402

MISSING = [what for what, ok in [
    (f"Chromium at {CHROMIUM} (apt-get install -y chromium)", Path(CHROMIUM).exists()),
    ("playwright (pip install playwright)", importlib.util.find_spec("playwright") is not None),
    ("gradio (pip install 'sftune[ui]')", importlib.util.find_spec("gradio") is not None),
] if not ok]

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(MISSING), reason="browser test needs " + ", ".join(MISSING))]


def test_data_train_chat_in_a_browser(tiny_model_dir, tmp_path, monkeypatch):
    from sftune.ui.app import launch

    monkeypatch.setenv("SFTUNE_CACHE", str(tmp_path / "cache"))
    workdir = tmp_path / "work"
    model = shutil.copytree(tiny_model_dir, workdir / "tiny")  # typed paths must be inside --workdir
    shots = Path(os.environ.get("SFTUNE_UI_SCREENSHOTS") or tmp_path / "screenshots")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = launch(port=port, workdir=workdir, block=False)
    try:
        seen = walk(f"http://127.0.0.1:{port}/", str(model), shots)
    finally:
        app.close()
    from sftune.ui.data_page import DEMO_FILE

    rows = sum(1 for ln in DEMO_FILE.read_text(encoding="utf-8").splitlines() if ln.strip())  # the bundled data grows
    assert f"kept: {rows}" in seen["report"] and "dropped: 0" in seen["report"]
    assert "finished" in seen["status"] and "step 2/2" in seen["status"], seen["log"]
    run = Path(seen["run_dir"])
    assert run.parent == workdir / "runs" and (run / "adapter_config.json").is_file()
    assert len([ln for ln in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in ln]) == 2
    assert seen["answer"] and seen["base_answer"] and not seen["chat_error"]
    assert len(seen["answer_lengths"]) >= 3, seen["answer_lengths"]  # the answer arrived in pieces
    assert all((shots / n).is_file() for n in ("1-data.png", "2-train.png", "3-chat.png"))
