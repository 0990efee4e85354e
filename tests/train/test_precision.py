"""Precision choice: from the hardware, with the reason; explicit requests honoured or refused clearly."""

from __future__ import annotations

import pytest

from sftune.train.precision import choose_precision, cpu_flags, training_args_for


def test_auto_on_cpus():
    assert choose_precision("auto", flags={"avx2", "amx_bf16", "amx_tile"}, cuda=None)[0] == "bf16"
    assert choose_precision("auto", flags={"avx512f", "avx512_bf16"}, cuda=None)[0] == "bf16"
    prec, why = choose_precision("auto", flags={"avx2", "avx512f"}, cuda=None)
    assert prec == "fp32" and "neither AMX nor AVX-512-BF16" in why


def test_auto_on_gpus():
    assert choose_precision("auto", flags=set(), cuda=("H100", True)) == ("bf16", "GPU H100 supports bf16")
    assert choose_precision("auto", flags=set(), cuda=("T4", False))[0] == "fp16"


def test_explicit_requests(caplog):
    assert choose_precision("fp32", flags={"amx_bf16"}, cuda=None)[0] == "fp32"
    with caplog.at_level("WARNING", logger="sftune"):
        assert choose_precision("bf16", flags={"avx2"}, cuda=None)[0] == "bf16"
    assert "emulated" in caplog.text
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        choose_precision("fp16", flags=set(), cuda=None)


def test_cpu_flags_reads_the_flags_line(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 amx_bf16\n")
    assert cpu_flags(f) == {"fpu", "sse", "avx2", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_training_args():
    assert training_args_for("bf16", cuda=False) == {"use_cpu": True, "bf16": True}
    assert training_args_for("fp16", cuda=True) == {"fp16": True}
    assert training_args_for("fp32", cuda=False) == {"use_cpu": True}
