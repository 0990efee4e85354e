"""Precision choice: one vocabulary, from the hardware with the reason, explicit requests honoured or refused clearly."""

from __future__ import annotations

import json

import pytest

from sftune.model import precision as P
from sftune.model.precision import (
    PrecisionError,
    choose_device,
    choose_precision,
    config_precision,
    cpu_flags,
    inference_dtype,
    parse_precision,
    save_precision,
    torch_dtype,
    training_args_for,
)


def test_auto_on_cpus():
    assert choose_precision("auto", flags={"avx2", "amx_bf16", "amx_tile"}, cuda=None)[0] == "bf16"
    assert choose_precision("auto", flags={"avx512f", "avx512_bf16"}, cuda=None)[0] == "bf16"
    prec, why = choose_precision("auto", flags={"avx2", "avx512f"}, cuda=None)
    assert prec == "fp32" and "neither AMX nor AVX-512-BF16" in why


def test_auto_on_gpus():
    assert choose_precision("auto", flags=set(), cuda=("H100", True)) == ("bf16", "GPU H100 supports bf16")
    assert choose_precision("auto", flags=set(), cuda=("T4", False))[0] == "fp16"
    # inference has no autocast and no loss scaling: fp16 weights could overflow, so float32
    assert choose_precision("auto", purpose="inference", flags=set(), cuda=("T4", False))[0] == "fp32"
    assert choose_precision("auto", purpose="inference", flags=set(), cuda=("H100", True))[0] == "bf16"


def test_explicit_requests(caplog):
    assert choose_precision("fp32", flags={"amx_bf16"}, cuda=None)[0] == "fp32"
    with caplog.at_level("WARNING", logger="sftune"):
        assert choose_precision("bf16", flags={"avx2"}, cuda=None)[0] == "bf16"
    assert "emulated" in caplog.text
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        choose_precision("fp16", flags=set(), cuda=None)
    # fp16 weights do run on a CPU for inference (slowly): allowed, with a warning
    caplog.clear()
    with caplog.at_level("WARNING", logger="sftune"):
        assert choose_precision("float16", purpose="inference", flags=set(), cuda=None)[0] == "fp16"
    assert "slow" in caplog.text


def test_parse_accepts_every_spelling_and_names_the_valid_ones():
    import torch

    assert [parse_precision(v) for v in ("auto", "FP32", "float32", "float", "torch.float32")] == ["auto"] + ["fp32"] * 4
    assert [parse_precision(v) for v in ("bf16", "bfloat16", torch.bfloat16)] == ["bf16"] * 3
    assert [parse_precision(v) for v in ("fp16", "float16", "half", torch.float16)] == ["fp16"] * 4
    with pytest.raises(PrecisionError, match=r"--precision: unknown precision 'fp8'\n  fix: use one of auto, fp32, bf16, fp16"):
        parse_precision("fp8", what="--precision")
    with pytest.raises(PrecisionError, match="unknown precision"):
        parse_precision(torch.int8)
    with pytest.raises(PrecisionError, match="unknown precision"):
        choose_precision("fp64", flags=set(), cuda=None)


def test_torch_dtype():
    import torch

    assert [torch_dtype(p) for p in ("fp32", "bf16", "fp16", "half")] == [torch.float32, torch.bfloat16, torch.float16, torch.float16]
    with pytest.raises(PrecisionError, match="resolve it first"):
        torch_dtype("auto")


def _fake_cpuinfo(monkeypatch, tmp_path, flags: str):
    f = tmp_path / "cpuinfo"
    f.write_text(f"processor\t: 0\nflags\t\t: fpu sse {flags}\n\nprocessor\t: 1\nflags\t\t: fpu sse {flags}\n")
    monkeypatch.setattr(P, "CPUINFO", str(f))


@pytest.mark.parametrize("flags, expected", [("avx2", "float32"), ("avx2 amx_bf16 amx_tile", "bfloat16"), ("avx512_bf16", "bfloat16")])
def test_cpu_flag_check_decides_auto_for_training_and_inference(monkeypatch, tmp_path, flags, expected):
    """The same flag check serves training and inference: bf16 only where the CPU runs it natively."""
    import torch

    _fake_cpuinfo(monkeypatch, tmp_path, flags)
    assert inference_dtype("auto", device="cpu") == getattr(torch, expected)
    assert torch_dtype(choose_precision("auto", device="cpu")[0]) == getattr(torch, expected)
    assert inference_dtype(None, device="cpu") == getattr(torch, expected)  # None = not given = auto
    assert inference_dtype("fp32", device="cpu") == torch.float32  # an explicit choice is not second-guessed


def test_load_for_inference_uses_the_cpu_flag_check(monkeypatch, tmp_path, tiny_model_dir):
    import torch

    from sftune.model.loading import load_for_inference

    _fake_cpuinfo(monkeypatch, tmp_path, "avx2 amx_bf16")
    model, _ = load_for_inference(str(tiny_model_dir), device="cpu")
    assert model.dtype == torch.bfloat16
    _fake_cpuinfo(monkeypatch, tmp_path, "avx2")
    model, _ = load_for_inference(str(tiny_model_dir), device="cpu")
    assert model.dtype == torch.float32
    model, _ = load_for_inference(str(tiny_model_dir), precision=torch.bfloat16, device="cpu")  # a torch dtype still works
    assert model.dtype == torch.bfloat16


def test_cpu_flags_reads_the_flags_line(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 amx_bf16\n")
    assert cpu_flags(f) == {"fpu", "sse", "avx2", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_choose_device():
    import torch

    assert choose_device("cpu") == "cpu"
    assert choose_device() == ("cuda" if torch.cuda.is_available() else "cpu")


def test_saved_precision_is_asked_for_else_the_base_models_own(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": "bfloat16"}))
    assert config_precision(tmp_path) == "bf16"
    assert save_precision(None, tmp_path) == "bf16" and save_precision("auto", tmp_path) == "bf16"
    assert save_precision("float32", tmp_path) == "fp32"
    assert save_precision(None, tmp_path / "absent") is None  # a hub name: nothing recorded
    (tmp_path / "config.json").write_text(json.dumps({"dtype": "int4"}))
    with pytest.raises(PrecisionError, match=r"config.json: field 'dtype': unknown precision 'int4'"):
        save_precision(None, tmp_path)


def test_training_args():
    assert training_args_for("bf16", cuda=False) == {"use_cpu": True, "bf16": True}
    assert training_args_for("fp16", cuda=True) == {"fp16": True}
    assert training_args_for("fp32", cuda=False) == {"use_cpu": True}
