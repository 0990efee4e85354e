"""Background jobs: found again from their folder, with how they ended and the log tail."""

from __future__ import annotations

import sys
import time

import pytest

from sftune.ui import processes


def _wait_state(folder, name, states, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = processes.status(folder, name)
        if st.state in states:
            return st
        time.sleep(0.05)
    raise AssertionError(f"job {name} still {processes.status(folder, name).state}")


def test_finished_job(tmp_path):
    pid = processes.start([sys.executable, "-c", "print('hello from the job')"], tmp_path, "job")
    st = _wait_state(tmp_path, "job", {"finished", "failed"})
    assert (st.state, st.returncode, st.pid) == ("finished", 0, pid)
    assert "hello from the job" in processes.log_tail(tmp_path, "job")


def test_failed_job_keeps_the_reason(tmp_path):
    processes.start([sys.executable, "-c", "raise SystemExit('data file missing: x.jsonl')"], tmp_path, "job")
    st = _wait_state(tmp_path, "job", {"finished", "failed"})
    assert st.state == "failed" and st.returncode == 1
    assert processes.log_tail(tmp_path, "job").endswith("data file missing: x.jsonl")


def test_stop_and_no_second_start_while_running(tmp_path):
    processes.start([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path, "job")
    assert processes.status(tmp_path, "job").state == "running"
    with pytest.raises(RuntimeError, match="already running"):
        processes.start([sys.executable, "-c", "pass"], tmp_path, "job")
    pid = processes.status(tmp_path, "job").pid
    deadline = time.time() + 10
    while (processes.memory_mb(pid) or 0) < 1 and time.time() < deadline:
        time.sleep(0.1)  # right after fork the child is tiny until Python has started
    assert processes.memory_mb(pid) > 1
    assert processes.stop(tmp_path, "job")
    st = _wait_state(tmp_path, "job", {"stopped"}, timeout=15)
    assert st.returncode == processes.STOPPED
    assert not processes.stop(tmp_path, "job")  # nothing left to stop


def test_job_ended_while_no_app_watched(tmp_path):
    # A pid file whose process is gone and no exit file: a restarted app cannot know the code.
    import json
    import subprocess

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    (tmp_path / "job.pid").write_text(json.dumps({"pid": p.pid, "command": ["x"], "started": time.time()}))
    assert processes.status(tmp_path, "job").state == "ended"
    assert processes.status(tmp_path / "nothing", "job").state == "none"


def test_log_tail_keeps_the_last_progress_bar_state(tmp_path):
    (tmp_path / "job.log").write_bytes(b"start\n\rtraining: 0/4\rtraining: 1/4\rtraining: 2/4\nloss done\n")
    assert processes.log_tail(tmp_path, "job") == "start\ntraining: 2/4\nloss done"
    assert processes.log_tail(tmp_path, "job", lines=1) == "loss done"
