"""`sftune ui` on the command line: the refusals come before any server starts, exit 2, and say the fix."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("gradio", reason="the web app needs gradio: pip install 'sftune[ui]'")

from sftune.cli import main  # noqa: E402


@pytest.fixture()
def no_server(monkeypatch):
    """Fail the test if the app were built (and so served)."""
    import sftune.ui.app as app

    def refuse(*a, **k):
        raise AssertionError("the app was built: the refusal must come first")

    monkeypatch.setattr(app, "build_app", refuse)


def test_network_host_without_auth_exits_2_with_the_fix(no_server, capsys):
    assert main(["ui", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--host 0.0.0.0" in err and "--auth USER:PASSWORD" in err and "127.0.0.1" in err


def test_bad_auth_and_port_and_workdir_exit_2(no_server, tmp_path, capsys):
    assert main(["ui", "--host", "0.0.0.0", "--auth", "nopassword"]) == 2
    assert "USER:PASSWORD" in capsys.readouterr().err
    assert main(["ui", "--port", "70000"]) == 2
    assert "port must be in 1..65535" in capsys.readouterr().err
    assert main(["ui", "--workdir", str(tmp_path / "absent")]) == 2
    assert "create it first" in capsys.readouterr().err


def test_refusal_through_the_real_entry_point():
    # A server would block: the timeout turns "it started serving" into a failure, not a hang.
    proc = subprocess.run([sys.executable, "-m", "sftune", "ui", "--host", "0.0.0.0", "--port", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "--auth USER:PASSWORD" in proc.stderr and "Running on" not in proc.stdout + proc.stderr
