"""Runs started from the page: progress read from the run folder, and a real run started, watched,
stopped and resumed as a separate `python -m sftune train` process."""

from __future__ import annotations

import json
import shutil
import time

import pytest
import yaml

from sftune.ui import processes, runs


def test_progress_from_metrics_and_progress_bar(tmp_path):
    rows = [{"step": 1, "loss": 2.5, "tokens_seen": 100}, {"step": 2, "loss": 2.0, "tokens_seen": 200},
            {"step": 2, "eval_loss": 2.2}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{\"step\": 3, \"lo")
    (tmp_path / "train.log").write_text(
        "precision: fp32\n\rtraining:  40%|####      | 2/5 [00:04<00:06,  2.1s/step, loss=2.0000, lr=1.00e-04, tok/s=1,234]")
    p = runs.progress(tmp_path)
    assert p.state == "none" and (p.step, p.total, p.eta, p.tokens_per_second) == (2, 5, "00:06", 1234.0)
    assert p.losses == [(1, 2.5), (2, 2.0)] and p.eval_losses == [(2, 2.2)]
    frame = runs.loss_frame(p)
    assert list(frame.columns) == ["step", "loss", "series"] and len(frame) == 3
    assert "step 2/5" in p.summary() and "1,234 tokens/s" in p.summary()
    (tmp_path / "run_info.json").write_text("{}")
    assert runs.progress(tmp_path).state == "finished"  # a CLI run: run_info.json is written last


def test_failed_run_says_what_to_do(tmp_path):
    p = runs.Progress("failed", returncode=2)
    assert "exit code 2" in p.summary() and "log" in p.summary()


def _wait(run_dir, states, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        p = runs.progress(run_dir)
        if p.state in states:
            return p
        time.sleep(0.5)
    raise AssertionError(f"run still {runs.progress(run_dir).state}:\n{runs.progress(run_dir).log}")


def test_run_start_stop_resume(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SFTUNE_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": f"{a}+{a}?"},
                                                       {"role": "assistant", "content": f"{2 * a}."}]}) for a in range(16)))
    cfg = {"model": str(tiny_model_dir), "data": [str(data)], "max_steps": 3, "per_device_train_batch_size": 4,
           "logging_steps": 1, "save_steps": 1, "report_to": ["none"], "precision": "fp32", "output_dir": "ignored"}
    run = tmp_path / "runs" / "a"
    runs.start_run(cfg, run, compare=False, cwd=tmp_path)
    saved = yaml.safe_load((run / runs.CONFIG_NAME).read_text())
    assert "output_dir" not in saved and saved["max_steps"] == 3
    assert runs.progress(run).state == "running"
    assert runs.list_runs(tmp_path / "runs") == [run]
    p = _wait(run, {"finished", "failed"})
    assert p.state == "finished", p.log
    assert [s for s, _ in p.losses] == [1, 2, 3] and p.total == 3 and (run / "adapter_config.json").is_file()
    with pytest.raises(FileExistsError, match="Resume"):
        runs.start_run(cfg, run, compare=False)  # a fresh start would mix into this run's files
    # Resume continues from the last complete checkpoint (checkpoint-3): a run with more steps.
    shutil.rmtree(run / "checkpoint-1", ignore_errors=True)
    cfg_file = run / runs.CONFIG_NAME
    cfg_file.write_text(yaml.safe_dump({**saved, "max_steps": 4}))
    runs.resume_run(run, compare=False, cwd=tmp_path)
    p = _wait(run, {"finished", "failed"})
    assert p.state == "finished", p.log
    assert "resuming from" in processes.log_tail(run, runs.JOB, 200) and p.losses[-1][0] == 4


def test_stop_a_running_run(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SFTUNE_CACHE", str(tmp_path / "cache"))
    cfg = {"model": str(tiny_model_dir), "max_steps": 10_000, "logging_steps": 1, "report_to": ["none"], "precision": "fp32"}
    run = tmp_path / "r"
    runs.start_run(cfg, run, compare=False)
    _wait_for_step(run)
    assert runs.stop_run(run)
    p = _wait(run, {"stopped"}, timeout=30)
    assert "Resume" in p.summary()


def _wait_for_step(run, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline and not runs.read_metrics(run):
        assert runs.progress(run).state == "running", runs.progress(run).log
        time.sleep(0.5)


def test_failed_run_shows_why(tiny_model_dir, tmp_path):
    cfg = {"model": str(tiny_model_dir), "data": [str(tmp_path / "missing.jsonl")], "max_steps": 1, "report_to": ["none"]}
    run = tmp_path / "bad"
    runs.start_run(cfg, run, compare=False)
    p = _wait(run, {"finished", "failed"}, timeout=120)
    assert p.state == "failed" and p.returncode == 2
    tail = "\n".join(p.log.splitlines()[-2:])  # the CLI's error and its fix end the log shown in the page
    assert "missing.jsonl" in tail and "fix:" in tail
    assert "exit code 2" in p.summary()
