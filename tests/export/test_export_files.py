"""Tokenizer metadata, refusals, overwrite protection, K-quant hand-off and the Ollama Modelfile."""

from __future__ import annotations

import json

import gguf
import pytest

from sftune.export import ExportError, export_gguf
from sftune.export.ollama import chat_layout, go_template


def _fields(path):
    r = gguf.GGUFReader(path)
    return {k: v.contents() for k, v in r.fields.items()}, r


def test_tokenizer_metadata_matches_the_hf_tokenizer(model_dirs, smol_tokenizer, tmp_path):
    f, _ = _fields(export_gguf(str(model_dirs("llama")), tmp_path / "m.gguf", "f16").path)
    tok = smol_tokenizer
    assert f["tokenizer.ggml.model"] == "gpt2" and f["tokenizer.ggml.pre"] == "smollm"
    tokens = f["tokenizer.ggml.tokens"]
    assert len(tokens) == len(tok) and tokens[504] == tok.convert_ids_to_tokens(504)
    types = f["tokenizer.ggml.token_type"]
    for tid in tok.all_special_ids:
        assert types[tid] == gguf.TokenType.CONTROL, tok.convert_ids_to_tokens(tid)
    assert types[504] == gguf.TokenType.NORMAL
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    assert f["tokenizer.ggml.merges"][:3] == [m if isinstance(m, str) else " ".join(m) for m in merges[:3]]
    assert len(f["tokenizer.ggml.merges"]) == len(merges)
    assert (f["tokenizer.ggml.bos_token_id"], f["tokenizer.ggml.eos_token_id"]) == (tok.bos_token_id, tok.eos_token_id)
    assert f["tokenizer.ggml.padding_token_id"] == tok.pad_token_id
    assert f["tokenizer.ggml.add_bos_token"] is False  # SmolLM2 adds no BOS when encoding
    assert f["tokenizer.chat_template"] == tok.chat_template


def test_unsupported_architecture_is_refused_by_name_before_writing(smol_tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    src = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=49152)).save_pretrained(src)
    AutoTokenizer.from_pretrained(str(smol_tokenizer_dir)).save_pretrained(src)
    with pytest.raises(ExportError, match="GPT2LMHeadModel.*LlamaForCausalLM"):
        export_gguf(str(src), tmp_path / "out" / "m.gguf")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_existing_file_needs_force_and_is_replaced_whole(model_dirs, tmp_path):
    out = tmp_path / "m.gguf"
    out.write_bytes(b"old")
    with pytest.raises(ExportError, match="(?s)already exists.*--force"):
        export_gguf(str(model_dirs("llama")), out, "q8_0")
    assert out.read_bytes() == b"old"
    export_gguf(str(model_dirs("llama")), out, "q8_0", force=True)
    assert out.read_bytes()[:4] == b"GGUF"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]  # no temporary file left behind


def test_unknown_quant_and_k_quant_hand_off(model_dirs, tmp_path):
    with pytest.raises(ExportError, match="unknown --quant 'q3'"):
        export_gguf(str(model_dirs("llama")), tmp_path / "m.gguf", "q3")
    res = export_gguf(str(model_dirs("llama")), tmp_path / "m.gguf", "Q4_K_M")
    assert res.path == tmp_path / "m.f16.gguf" and res.quant == "f16"
    assert res.commands == [f"llama-quantize {tmp_path / 'm.f16.gguf'} {tmp_path / 'm.gguf'} Q4_K_M"]
    assert not (tmp_path / "m.gguf").exists()


def test_ollama_modelfile(model_dirs, tmp_path):
    res = export_gguf(str(model_dirs("llama")), tmp_path / "smol.gguf", "q8_0", ollama=True)
    text = res.modelfile.read_text()
    assert res.modelfile == tmp_path / "Modelfile"
    assert "FROM ./smol.gguf\n" in text
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in text
    assert "PARAMETER stop <|im_end|>" in text
    assert '{{ if eq .Role "user" }}' not in text and '{{ else if eq .Role "user" }}<|im_start|>user\n{{ .Content }}' in text
    assert "{{-" not in text  # trim markers would eat the format's newlines
    assert res.commands == [f"ollama create smol -f {tmp_path / 'Modelfile'}"]


@pytest.mark.parametrize("name", ["chatml", "llama3", "qwen2.5"])
def test_chat_layout_reproduces_builtin_templates(name, smol_tokenizer):
    from sftune.data.templates import install_template, resolve_template

    install_template(smol_tokenizer, resolve_template(name, smol_tokenizer, warn=False))
    layout = chat_layout(smol_tokenizer)
    msgs = [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"}]
    assert layout.render(msgs) == smol_tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert "{{ .Content }}" in go_template(layout)



def test_train_export_spec_and_run_export(model_dirs, tmp_path):
    import shutil

    from sftune.export import export_run, parse_export_spec

    assert parse_export_spec("gguf") == "f16" and parse_export_spec("GGUF:Q4_0") == "q4_0"
    with pytest.raises(ExportError, match="only export format is gguf"):
        parse_export_spec("onnx")
    with pytest.raises(ExportError, match="unknown --quant 'q9'"):
        parse_export_spec("gguf:q9")
    run = tmp_path / "myrun"
    shutil.copytree(model_dirs("llama"), run)
    res = export_run(run, "gguf:q8_0")
    assert res.path == run / "myrun-q8_0.gguf" and res.path.read_bytes()[:4] == b"GGUF"
