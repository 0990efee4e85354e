"""`sftune export` on the command line: a file gguf itself reads back, never an overwrite without
--force, and refusals (quant, architecture) that exit 2 before anything is written."""

from __future__ import annotations

import subprocess
import sys

import gguf
import pytest

from sftune.cli import main


def _arch(path) -> str:
    field = gguf.GGUFReader(str(path)).fields["general.architecture"]
    return bytes(field.parts[field.data[0]]).decode()


@pytest.mark.parametrize("kind, arch", [("llama", "llama"), ("qwen3", "qwen3")])
def test_export_writes_a_gguf_file(model_dirs, tmp_path, capsys, kind, arch):
    out = tmp_path / "x.gguf"
    assert main(["export", "--model", str(model_dirs(kind)), "--output", str(out), "--quant", "q8_0"]) == 0
    assert f"wrote {out} (q8_0" in capsys.readouterr().out
    assert _arch(out) == arch
    reader = gguf.GGUFReader(str(out))
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32  # 1-D tensors stay f32
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))  # atomic: no leftovers


def test_existing_file_is_not_overwritten_without_force(model_dirs, tmp_path, capsys):
    out = tmp_path / "x.gguf"
    out.write_bytes(b"mine")
    argv = ["export", "--model", str(model_dirs("llama")), "--output", str(out), "--quant", "q8_0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{out} already exists" in err and "--force" in err
    assert out.read_bytes() == b"mine"
    assert main([*argv, "--force"]) == 0
    assert _arch(out) == "llama"


def test_unknown_quant_exits_2_naming_the_quants(model_dirs, tmp_path, capsys):
    out = tmp_path / "x.gguf"
    assert main(["export", "--model", str(model_dirs("llama")), "--output", str(out), "--quant", "q3_nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown --quant 'q3_nope'" in err and "q8_0" in err and "q4_k_m" in err
    assert not out.exists()


def test_unsupported_architecture_exits_2_before_writing(smol_tokenizer_dir, tmp_path, capsys):
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(str(smol_tokenizer_dir))
    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=64)).save_pretrained(folder)
    tok.save_pretrained(folder)
    out = tmp_path / "x.gguf"
    assert main(["export", "--model", str(folder), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot export GPT2LMHeadModel" in err and "LlamaForCausalLM" in err and "fix:" in err
    assert not out.exists() and not list(tmp_path.glob("*.gguf*"))


def test_missing_output_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "sftune", "export", "--model", "default"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--output" in proc.stderr
