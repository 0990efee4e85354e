"""Evaluate and Export from the page: `sftune eval` / `sftune merge` as jobs in the run folder, their
results read back, and a clear answer where a step is not possible."""

from __future__ import annotations

import json
import time

from sftune.ui import processes, runs
from sftune.ui.access import PathGuard
from sftune.ui.tools_page import has_command, job_view, start_eval, start_export


def _wait(folder, job, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = processes.status(folder, job)
        if st.state not in ("running",):
            return st
        time.sleep(0.5)
    raise AssertionError(processes.log_tail(folder, job))


def test_eval_and_merge_a_run(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SFTUNE_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": f"{a}?"}, {"role": "assistant", "content": f"{a}."}]})
                              for a in range(8)))
    run = tmp_path / "runs" / "r"
    runs.start_run({"model": str(tiny_model_dir), "data": [str(data)], "max_steps": 1, "report_to": ["none"]}, run, compare=False)
    assert _wait(run, runs.JOB).state == "finished", processes.log_tail(run, runs.JOB)
    guard = PathGuard()

    assert start_eval(guard, str(run), questions=True, forgetting=False, max_new_tokens=4) == "evaluation started"
    assert _wait(run, "eval").state == "finished", processes.log_tail(run, "eval")
    line, log, report = job_view(str(run), "eval", "eval/eval.md")
    assert "finished" in line and report == (run / "eval" / "eval.md").read_text() and report

    assert start_export(guard, str(run), "merge") == ("merge started", True)
    assert _wait(run, "merge").state == "finished", processes.log_tail(run, "merge")
    assert (run / "merged" / "config.json").is_file() and not (run / "merged" / "adapter_config.json").exists()


def test_what_cannot_be_done_is_explained(tmp_path):
    guard = PathGuard(tmp_path)
    (tmp_path / "full").mkdir()
    text, started = start_export(guard, "full", "merge")
    assert not started and "no adapter_config.json" in text
    text, started = start_export(guard, "../x", "merge")
    assert not started and "outside the workdir" in text
    if not has_command("export"):
        text, started = start_export(guard, "full", "export")
        assert not started and "not available" in text
    assert "Could not start the evaluation" in start_eval(guard, "/elsewhere")
    assert job_view(None, "eval")[0] == "choose a run"
    assert job_view(str(tmp_path / "full"), "eval")[0] == "no eval job yet"
