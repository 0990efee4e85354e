"""Background jobs (training, eval, merge, export) as separate processes that the page only watches.

A job lives in a folder: ``NAME.log`` (its stdout and stderr), ``NAME.pid`` (JSON: pid, command,
start time) and, once it has ended, ``NAME.exit`` (JSON: pid and return code). Everything the page shows is
read back from these files, so a reloaded page, or a restarted app, finds its jobs again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

#: Return code recorded when the user pressed Stop (the process was sent SIGTERM).
STOPPED = -int(signal.SIGTERM)
#: Jobs this app started and is still reaping: between the child's exit and the exit file being
#: written, such a job still counts as running (not as "ended" with an unknown code).
_REAPING: set[int] = set()


@dataclass
class JobState:
    """What a job folder says about the job."""

    state: str  # none | running | finished | failed | stopped | ended
    returncode: int | None = None
    pid: int | None = None
    started: float | None = None
    command: list | None = None


def sftune_command(*args: str) -> list[str]:
    """``python -m sftune ARGS`` with this interpreter (and so this sftune)."""
    return [sys.executable, "-m", "sftune", *args]


def start(cmd: list[str], folder: str | os.PathLike, name: str, *, cwd: str | os.PathLike | None = None) -> int:
    """Start ``cmd`` in its own session, logging to ``folder/NAME.log``; returns the pid.

    The new session means a Ctrl-C in the app's terminal does not reach the job, and Stop can
    end the job's whole process group (data loader workers included).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = status(folder, name)
    if state.state == "running":
        raise RuntimeError(f"a {name} job is already running in {folder} (pid {state.pid}); stop it first")
    (folder / f"{name}.exit").unlink(missing_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log_path = folder / f"{name}.log"
    # A job killed mid-line (a progress bar) leaves no newline: start the new command on its own line.
    cut = log_path.is_file() and log_path.stat().st_size > 0 and log_path.read_bytes()[-1:] != b"\n"
    log = open(log_path, "ab")
    log.write(("\n" if cut else "").encode() + f"$ {' '.join(cmd)}\n".encode())
    log.flush()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd, env=env,
                            start_new_session=True)
    log.close()
    _REAPING.add(proc.pid)
    record = {"pid": proc.pid, "command": cmd, "started": time.time()}
    (folder / f"{name}.pid").write_text(json.dumps(record), encoding="utf-8")
    # Reap the child and record how it ended; without a wait() it would linger as a zombie that
    # still "exists" for os.kill(pid, 0).
    threading.Thread(target=_wait, args=(proc, folder, name), daemon=True).start()
    return proc.pid


def _wait(proc: subprocess.Popen, folder: Path, name: str) -> None:
    rc = proc.wait()
    try:
        if _exit_code(folder, name, proc.pid) is None:  # stop() may have written STOPPED already
            _write_exit(folder, name, proc.pid, rc)
    finally:
        _REAPING.discard(proc.pid)


def _write_exit(folder: Path, name: str, pid: int, rc: int) -> None:
    # The pid goes with the code: a late write from an earlier job must not end a newer one.
    (folder / f"{name}.exit").write_text(json.dumps({"pid": pid, "returncode": rc}), encoding="utf-8")


def _exit_code(folder: Path, name: str, pid: int) -> int | None:
    path = folder / f"{name}.exit"
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return int(rec["returncode"]) if rec.get("pid") == pid else None


def _alive(pid: int, started: float | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.is_file():  # Linux: a zombie, or a reused pid that started after our job, is not our job
        fields = stat.read_text().rsplit(")", 1)[-1].split()
        if fields[0] == "Z":
            return False
    return True


def status(folder: str | os.PathLike, name: str) -> JobState:
    folder = Path(folder)
    pid_file = folder / f"{name}.pid"
    if not pid_file.is_file():
        return JobState("none")
    rec = json.loads(pid_file.read_text(encoding="utf-8"))
    base = dict(pid=rec["pid"], started=rec.get("started"), command=rec.get("command"))
    rc = _exit_code(folder, name, rec["pid"])
    if rc is not None:
        state = "finished" if rc == 0 else "stopped" if rc == STOPPED else "failed"
        return JobState(state, rc, **base)
    if rec["pid"] in _REAPING or _alive(rec["pid"], rec.get("started")):
        return JobState("running", **base)
    # Ended while no app was watching it (the app was restarted): the return code is unknown.
    return JobState("ended", **base)


def stop(folder: str | os.PathLike, name: str, grace: float = 10.0) -> bool:
    """Send SIGTERM to the job's process group (SIGKILL after ``grace`` s); False if not running."""
    folder = Path(folder)
    st = status(folder, name)
    if st.state != "running":
        return False
    _write_exit(folder, name, st.pid, STOPPED)
    try:
        os.killpg(st.pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.time() + grace
    while time.time() < deadline and _alive(st.pid, st.started):
        time.sleep(0.1)
    if _alive(st.pid, st.started):
        try:
            os.killpg(st.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return True


def log_tail(folder: str | os.PathLike, name: str, lines: int = 40, max_bytes: int = 64_000) -> str:
    """The last lines of the job's log; progress-bar redraws (``\\r``) keep only their last state."""
    path = Path(folder) / f"{name}.log"
    if not path.is_file():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - max_bytes))
        text = f.read().decode("utf-8", errors="replace")
    out = []
    for line in text.split("\n"):
        states = [seg for seg in line.split("\r") if seg.strip()]
        out.append(states[-1] if states else "")
    while out and not out[-1]:
        out.pop()  # the log's final newline is not a line of its own
    return "\n".join(out[-lines:])


def memory_mb(pid: int | None) -> float | None:
    """Resident memory of a running process (Linux /proc), in MB; None where unknown."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
