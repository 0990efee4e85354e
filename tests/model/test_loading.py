"""Model resolution and loading: folders, adapters, GGUF/default conversion, custom architectures."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from sftune.model.loading import (
    ModelLoadError,
    adapter_base,
    ensure_pad_token,
    is_adapter_dir,
    load_model,
    load_tokenizer,
    register_custom_architecture,
    resolve_model,
)


def test_local_folder_resolves_to_itself(tiny_model_dir):
    assert resolve_model(str(tiny_model_dir)) == str(tiny_model_dir)
    tok = load_tokenizer(str(tiny_model_dir))
    assert tok.pad_token is not None and tok.eos_token == "<|im_end|>"


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="model not found"):
        resolve_model(str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_hub_name_offline_names_the_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="default"):
        load_tokenizer("someorg/some-model-that-is-not-cached")


def test_pad_token_set_without_touching_eos():
    class Tok:
        pad_token = None
        eos_token = "</s>"
        unk_token = None

    t = Tok()
    ensure_pad_token(t)
    assert t.pad_token == "</s>" and t.eos_token == "</s>"


def test_adapter_folder_loads_base_plus_adapter(tiny_model_dir, tmp_path):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    out = tmp_path / "adapter"
    peft_model.save_pretrained(out)
    assert is_adapter_dir(out) and not is_adapter_dir(tiny_model_dir)
    assert adapter_base(out) == str(tiny_model_dir)
    loaded = load_model(str(out))
    assert isinstance(loaded, PeftModel)
    x = torch.tensor([[1, 5, 9, 2]])
    peft_model.eval()
    assert torch.allclose(loaded(x).logits, peft_model(x).logits, atol=1e-6)
    # The tokenizer of an adapter folder without tokenizer files comes from its base.
    assert load_tokenizer(str(out)).eos_token == "<|im_end|>"


def test_adapter_base_falls_back_to_sftune_config(tiny_model_dir, tmp_path):
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tmp_path / "gone" / "x" / "y")}))
    (out / "sftune_config.yaml").write_text(f"model: {tiny_model_dir}\n")
    assert adapter_base(out) == str(tiny_model_dir)


def test_custom_architecture_registered_with_auto_classes(tmp_path, monkeypatch):
    from transformers import AutoConfig, AutoModelForCausalLM

    (tmp_path / "my_arch.py").write_text(textwrap.dedent('''
        from transformers import LlamaConfig, LlamaForCausalLM

        class TinyMixConfig(LlamaConfig):
            model_type = "tinymix_test"

        class TinyMixForCausalLM(LlamaForCausalLM):
            config_class = TinyMixConfig
    '''))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg_cls, model_cls = register_custom_architecture("my_arch:TinyMixConfig,TinyMixForCausalLM")
    cfg = AutoConfig.for_model("tinymix_test", vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                               num_attention_heads=2, num_key_value_heads=1)
    model = AutoModelForCausalLM.from_config(cfg)
    assert type(model).__name__ == "TinyMixForCausalLM"
    model.save_pretrained(tmp_path / "m")
    loaded = load_model(str(tmp_path / "m"), custom_architecture="my_arch:TinyMixConfig,TinyMixForCausalLM")
    assert type(loaded).__name__ == "TinyMixForCausalLM"
    sys.modules.pop("my_arch", None)


def test_custom_architecture_spec_errors():
    with pytest.raises(ModelLoadError, match="module:ConfigClass,ModelClass"):
        register_custom_architecture("just_a_module")
    with pytest.raises(ModelLoadError, match="cannot import"):
        register_custom_architecture("no_such_module_xyz:A,B")


@pytest.mark.slow
def test_default_model_is_a_plain_float_folder():
    """The GGUF is converted once into a safetensors folder that trains and saves."""
    import torch

    path = resolve_model("default")
    files = {p.name for p in __import__("pathlib").Path(path).iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "sftune_converted.json"} <= files
    cfg = json.loads((__import__("pathlib").Path(path) / "config.json").read_text())
    assert "quantization_config" not in cfg
    model = load_model("default")
    assert model.dtype == torch.float32 and getattr(model.config, "quantization_config", None) is None
    assert model.config.hidden_size == 576 and model.config.num_hidden_layers == 30
