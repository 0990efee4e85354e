"""Evaluate and Export from the page: `sftune eval` / `sftune merge` as jobs in the run folder, their
results read back, and a clear answer where a step is not possible."""

from __future__ import annotations

import json
import time

from sftune.ui import processes, runs
from sftune.ui.access import PathGuard
from sftune.ui.tools_page import job_view, start_eval, start_export


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
    text, started = start_export(guard, "full", "export", "q5_k_s")  # not offered on the page
    assert not started and "q8_0" in text
    assert "Could not start the evaluation" in start_eval(guard, "/elsewhere")
    assert job_view(None, "eval")[0] == "choose a run"
    assert job_view(str(tmp_path / "full"), "eval")[0] == "no eval job yet"


def test_export_gguf_from_the_page(tiny_model_dir, tmp_path, monkeypatch):
    """The Export page's GGUF button runs the real `sftune export` into RUN/<name>-<quant>.gguf."""
    import shutil

    import gguf

    from sftune.ui.tools_page import GGUF_QUANTS, export_command, gguf_path

    monkeypatch.setenv("SFTUNE_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "runs" / "tiny"
    shutil.copytree(tiny_model_dir, run)  # a full-model run folder
    guard = PathGuard(tmp_path)
    assert {"f16", "q8_0", "q4_0", "q4_k_m"} <= set(GGUF_QUANTS)

    text, started = start_export(guard, "runs/tiny", "export", "q8_0")
    out = run / "tiny-q8_0.gguf"
    assert started and str(out) in text, text
    assert _wait(run, "export").state == "finished", processes.log_tail(run, "export")
    assert out == gguf_path(run, "q8_0") and out.is_file()
    reader = gguf.GGUFReader(str(out))
    field = reader.fields["general.architecture"]
    assert bytes(field.parts[field.data[0]]).decode() == "llama"
    assert {t.tensor_type for t in reader.tensors if t.name.startswith("blk.")} >= {gguf.GGMLQuantizationType.Q8_0}
    assert "wrote" in job_view(str(run), "export")[1]

    text, started = start_export(guard, "runs/tiny", "export", "q8_0")  # never overwritten unless asked
    assert not started and "already exists" in text and "overwrite" in text
    assert export_command(run, "export", "q8_0", force=True)[-1] == "--force"
    text, started = start_export(guard, "runs/tiny", "export", "q4_k_m")  # a K-quant: f16 now, then llama-quantize
    assert started, text
    assert _wait(run, "export").state == "finished", processes.log_tail(run, "export")
    assert (run / "tiny-q4_k_m.f16.gguf").is_file() and "llama-quantize" in processes.log_tail(run, "export")
    text, started = start_export(guard, "runs/tiny", "export", "q3_nope")
    assert not started and "q8_0" in text
    text, started = start_export(guard, "runs/none", "export", "q8_0")
    assert not started and "No such run folder" in text
