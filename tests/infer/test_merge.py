"""merge_adapter: a plain transformers folder whose logits equal base + adapter."""

from __future__ import annotations

import json

import pytest

from sftune.infer.merge import MergeError, merge_adapter


def _logits(model, tok):
    import torch

    ids = tok.apply_chat_template([{"role": "user", "content": "Merging must not change the answer."}],
                                  add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=ids["input_ids"]).logits


def test_merged_logits_match_base_plus_adapter(tiny_model_dir, tiny_lora_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    base_logits = _logits(base, tok)
    with_adapter = PeftModel.from_pretrained(base, str(tiny_lora_dir)).eval()
    adapter_logits = _logits(with_adapter, tok)
    # The adapter is not a no-op, so equality below means the merge really happened.
    assert (adapter_logits - base_logits).abs().max() > 1e-2

    out = merge_adapter(tiny_lora_dir, tmp_path / "merged")
    names = {p.name for p in out.iterdir()}
    assert "model.safetensors" in names and "tokenizer_config.json" in names and "generation_config.json" in names
    assert not any(n.startswith("adapter_") for n in names), names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names), names

    merged = AutoModelForCausalLM.from_pretrained(str(out)).eval()  # plain transformers, no peft
    assert type(merged).__name__ == "LlamaForCausalLM" and not hasattr(merged, "peft_config")
    merged_tok = AutoTokenizer.from_pretrained(str(out))
    assert "sftune-test-adapter" in merged_tok.chat_template  # the adapter folder's template, not the base's
    assert merged.generation_config.max_new_tokens == 7  # the adapter folder's generation config
    torch.testing.assert_close(_logits(merged, merged_tok), adapter_logits, atol=1e-5, rtol=0)
    assert json.loads((out / "sftune_merge.json").read_text())["peft_type"] == "LORA"
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"  # the base's own dtype


def test_merge_dtype_is_the_base_dtype_unless_given(tiny_lora_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    out = merge_adapter(tiny_lora_dir, tmp_path / "bf16", precision="bfloat16")
    assert AutoModelForCausalLM.from_pretrained(str(out), dtype="auto").dtype == torch.bfloat16
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


def test_merge_refuses_non_adapters(tiny_model_dir, tmp_path):
    with pytest.raises(MergeError, match="not an adapter folder.*needs no merging"):
        merge_adapter(tiny_model_dir, tmp_path / "x")


def test_merge_refuses_prompt_tuning(tiny_model_dir, tmp_path):
    from peft import PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "pt"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)),
                           PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    model.save_pretrained(str(adapter))
    with pytest.raises(MergeError, match="prompt_tuning adapter .* cannot be merged"):
        merge_adapter(adapter, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_merge_cli(tiny_lora_dir, tmp_path, capsys):
    from sftune.cli import main

    assert main(["merge", "--model", str(tiny_lora_dir), "--output", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert main(["merge", "--model", str(tmp_path / "nothing"), "--output", str(tmp_path / "n")]) == 2
    assert "not an adapter folder" in capsys.readouterr().err


@pytest.mark.slow  # a short LoRA training run first (~20-40 s on a busy 2-core machine)
def test_train_merge_flag_writes_a_merged_folder(tiny_model_dir, tmp_path):
    """`sftune train --merge` (train/run.py calls merge_adapter) on a real training output."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sftune.config import SFTConfig
    from sftune.train.run import train

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"{a}+1?"}, {"role": "assistant", "content": str(a + 1)}]}) + "\n"
                            for a in range(8)))
    out = tmp_path / "run"
    train(SFTConfig(model=str(tiny_model_dir), data=[str(data)], output_dir=str(out), method="lora", merge=True, max_steps=2,
                    per_device_train_batch_size=4, learning_rate=5e-2, report_to=["none"], precision="fp32", save_steps=100,
                    eval_questions=[], cache_dir=str(tmp_path / "cache")), progress=False, compare=False)
    merged_dir = out / "merged"
    assert (merged_dir / "model.safetensors").is_file() and not (merged_dir / "adapter_config.json").exists()
    tok = AutoTokenizer.from_pretrained(str(merged_dir))
    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir)).eval()
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), str(out)).eval()
    torch.testing.assert_close(_logits(merged, tok), _logits(with_adapter, tok), atol=1e-5, rtol=0)
