"""Speed-ups that must not change the maths: per-sample attention, padding-free batches, compiled layers."""

from __future__ import annotations

import contextlib

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, TrainingArguments

from sftune.config import SFTConfig
from sftune.data.packing import pack
from sftune.train.packed_attention import NAME, segments, use_packed_attention
from sftune.train.speed import PaddingFreeCollator, decide_compile, training_speedups
from sftune.train.trainer import SFTTrainer
from test_packing import make_rows  # tests/train is on sys.path (rootdir-less test modules)

ATOL = 1e-5  # float32: the paths differ by summation order only


def _gqa_llama():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, attn_implementation="sdpa")
    return LlamaForCausalLM(cfg)


def _forward_backward(model, ids, pos):
    model.zero_grad()
    out = model(input_ids=ids, position_ids=pos, labels=ids, use_cache=False)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_per_sample_attention_equals_the_block_diagonal_mask():
    model = _gqa_llama().train()
    ids = torch.randint(0, 100, (2, 12))
    # row 0: three samples; row 1: two samples, the second a padding-tail-like segment
    pos = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3]])
    logits, grads = _forward_backward(model, ids, pos)
    with use_packed_attention(model) as switched:
        assert switched and model.config._attn_implementation == NAME
        logits2, grads2 = _forward_backward(model, ids, pos)
    assert model.config._attn_implementation == "sdpa"  # restored
    torch.testing.assert_close(logits2, logits, atol=ATOL, rtol=1e-4)
    for name in grads:
        torch.testing.assert_close(grads2[name], grads[name], atol=ATOL, rtol=1e-4, msg=name)
    # control: without the restarts the same rows attend across samples, which changes the logits
    leak, _ = _forward_backward(model, ids, torch.arange(12).expand(2, -1))
    assert (leak - logits).abs().max() > 100 * ATOL


def test_per_sample_attention_leaves_generation_alone():
    model = _gqa_llama().eval()
    ids = torch.randint(0, 100, (1, 6))
    ref = model.generate(ids, max_new_tokens=5, do_sample=False)
    with use_packed_attention(model):
        torch.testing.assert_close(model.generate(ids, max_new_tokens=5, do_sample=False), ref)


def test_segments_split_rows_at_position_restarts():
    assert segments(torch.tensor([[0, 1, 0, 1, 2]])) == [[(0, 2), (2, 5)]]
    assert segments(torch.tensor([[3, 4, 0, 1]])) == [[(0, 2), (2, 4)]]  # a row may start mid-sample


def test_padding_free_collator_concatenates_the_batch_and_passes_packed_rows_through():
    packed_rows = [{"input_ids": [1, 2], "labels": [1, 2], "seq_lengths": [2]}]
    c = PaddingFreeCollator(inner=lambda rows: ("inner", rows), pad_token_id=0)
    assert c(packed_rows) == ("inner", packed_rows)
    rows = make_rows(3, seed=1)
    b = c(rows)
    assert b["input_ids"].shape == (1, sum(len(r["input_ids"]) for r in rows)) and "attention_mask" not in b


def _one_step(model_dir, tmp_path, rows, *, batch, speed: dict | None, packing=False, lora=False):
    """Two SGD steps (lr 1) through sftune's trainer, with ``training_speedups(**speed)`` around it unless None."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear",
                                                 init_lora_weights="gaussian", task_type="CAUSAL_LM"))
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=batch, max_steps=2, optim="sgd", learning_rate=1.0,
        lr_scheduler_type="constant", weight_decay=0.0, use_cpu=True, report_to=[], save_strategy="no",
        disable_tqdm=True, seed=0, remove_unused_columns=False, logging_steps=1,
    )
    train = pack(Dataset.from_list(rows), 128, seed=0) if packing else Dataset.from_list(rows)
    tr = SFTTrainer(model=model, args=args, train_dataset=train)
    seen = []
    inner_collate = tr.data_collator
    with (training_speedups(model, SFTConfig(packing=packing, **speed.pop("cfg", {})), precision="fp32", cuda=False,
                            trainer=tr, **speed) if speed is not None else contextlib.nullcontext()) as report:
        collate = tr.data_collator
        tr.data_collator = lambda b: seen.append(collate(b)) or seen[-1]
        tr.train()
    tr.data_collator = inner_collate
    losses = [h["loss"] for h in tr.state.log_history if "loss" in h]
    return {n: p.detach().clone() for n, p in model.named_parameters()}, losses, seen, report, model


def _assert_same(a, b):
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=ATOL, rtol=1e-4, msg=name)


def test_padding_free_step_equals_padded_step(tiny_model_dir, tmp_path):
    rows = make_rows(16, seed=11)
    padded, loss_padded, batches, _, _ = _one_step(tiny_model_dir, tmp_path, rows, batch=8, speed=None)
    assert "attention_mask" in batches[0]  # really the padded path
    free, loss_free, batches, report, model = _one_step(tiny_model_dir, tmp_path, rows, batch=8, speed={})
    assert report.details["padding_free"] and report.details["packed_attention"]
    assert batches[0]["input_ids"].shape[0] == 1 and "position_ids" in batches[0]  # one row, no padding
    assert model.config._attn_implementation == "sdpa"
    assert loss_free == pytest.approx(loss_padded, rel=1e-5)
    _assert_same(free, padded)


def test_packed_rows_with_per_sample_attention_equal_the_masked_path(tiny_model_dir, tmp_path):
    rows = make_rows(12, seed=12)
    masked, loss_masked, *_ = _one_step(tiny_model_dir, tmp_path, rows, batch=2, packing=True, speed={"packed_attention": False})
    fast, loss_fast, _, report, _ = _one_step(tiny_model_dir, tmp_path, rows, batch=2, packing=True, speed={})
    assert report.details["packed_attention"] and not report.details["padding_free"]
    assert loss_fast == pytest.approx(loss_masked, rel=1e-5)
    _assert_same(fast, masked)


def test_fused_lora_steps_equal_peft_steps(tiny_model_dir, tmp_path):
    rows = make_rows(12, seed=13)
    peft_path, loss_peft, *_ = _one_step(tiny_model_dir, tmp_path, rows, batch=4, lora=True, speed={"fused_lora": False})
    fused, loss_fused, _, report, model = _one_step(tiny_model_dir, tmp_path, rows, batch=4, lora=True, speed={})
    assert report.details["fused_lora"] > 0 and "fused LoRA linears" in report.summary()
    assert not any("forward" in vars(m) for m in model.modules() if type(m).__name__ == "Linear")  # restored
    assert loss_fused == pytest.approx(loss_peft, rel=1e-5)
    _assert_same(fused, peft_path)
    assert all(p.abs().max() > 0 for n, p in fused.items() if "lora_B" in n)  # B starts at zero: the adapters trained


def test_compile_option_reaches_the_layers(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    with training_speedups(model, SFTConfig(compile="on"), precision="fp32", cuda=False) as report:
        assert report.compiled and report.layers == 2
        assert all(layer._compiled_call_impl is not None for layer in model.model.layers)
    assert all(layer._compiled_call_impl is None for layer in model.model.layers)  # eager again for generation
    with training_speedups(model, SFTConfig(compile="off"), precision="fp32", cuda=False) as report:
        assert not report.compiled and all(layer._compiled_call_impl is None for layer in model.model.layers)


def test_compile_flag_is_a_config_field():
    from sftune.cli import TRAIN_KEYS, build_parser, config_from_args

    assert config_from_args(build_parser().parse_args(["train", "--compile", "on"]), TRAIN_KEYS).compile == "on"
    assert SFTConfig().compile == "auto"
    with pytest.raises(Exception, match="compile"):
        SFTConfig(compile="yes")


def test_decide_compile():
    assert decide_compile("on", precision="fp32", cuda=False)[0]
    assert not decide_compile("off", precision="bf16", cuda=False)[0]
    assert not decide_compile("auto", precision="fp32", cuda=False)[0]  # measured: does not pay for typical CPU runs


@pytest.mark.slow
def test_compiled_training_gives_the_eager_losses(tiny_model_dir, tmp_path):
    rows = make_rows(16, seed=13)
    eager, loss_eager, *_ = _one_step(tiny_model_dir, tmp_path, rows, batch=8, speed={"cfg": {"compile": "off"}})
    comp, loss_comp, _, report, model = _one_step(tiny_model_dir, tmp_path, rows, batch=8, speed={"cfg": {"compile": "on"}})
    assert report.compiled and report.compile_seconds > 0
    assert all(layer._compiled_call_impl is None for layer in model.model.layers)
    assert loss_comp == pytest.approx(loss_eager, rel=1e-4)
    for name in eager:
        torch.testing.assert_close(comp[name], eager[name], atol=1e-4, rtol=1e-3, msg=name)
