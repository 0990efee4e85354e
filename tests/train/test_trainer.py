"""SFTTrainer: accumulation invariance, packed rows in the loop, length grouping."""

from __future__ import annotations

import random

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, TrainingArguments

from sftune.data.packing import pack
from sftune.train.trainer import SFTTrainer
from test_packing import make_rows  # tests/train is on sys.path (rootdir-less test modules)

ATOL = 1e-5  # float32 weights after one SGD step, lr 1


def _one_step(model_dir, tmp_path, rows, *, batch, accum, packing=False, chunked=True, max_length=None):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=batch, gradient_accumulation_steps=accum,
        max_steps=1, optim="sgd", learning_rate=1.0, lr_scheduler_type="constant", weight_decay=0.0,
        use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True, seed=0, remove_unused_columns=False,
    )
    train = Dataset.from_list(rows)
    if packing:  # the data step, before the trainer (as `sftune train --packing` runs it)
        train = pack(train, max_length, seed=args.seed)
    tr = SFTTrainer(model=model, args=args, train_dataset=train, chunked_loss=chunked)
    tr.train()
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _assert_same(a, b):
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=ATOL, rtol=1e-4, msg=name)


@pytest.mark.parametrize("chunked", [True, False])
def test_1x8_accumulation_equals_8x1(tiny_model_dir, tmp_path, chunked):
    rows = make_rows(8, seed=7)
    big = _one_step(tiny_model_dir, tmp_path, rows, batch=8, accum=1, chunked=chunked)
    small = _one_step(tiny_model_dir, tmp_path, rows, batch=1, accum=8, chunked=chunked)
    _assert_same(big, small)


def test_chunked_and_own_loss_give_the_same_update(tiny_model_dir, tmp_path):
    rows = make_rows(8, seed=8)
    _assert_same(
        _one_step(tiny_model_dir, tmp_path, rows, batch=8, accum=1, chunked=True),
        _one_step(tiny_model_dir, tmp_path, rows, batch=8, accum=1, chunked=False),
    )


def test_packed_step_equals_unpacked_step(tiny_model_dir, tmp_path):
    rows = make_rows(8, seed=9)
    packed = _one_step(tiny_model_dir, tmp_path, rows, batch=8, accum=1, packing=True, max_length=64)
    unpacked = _one_step(tiny_model_dir, tmp_path, rows, batch=8, accum=1)
    _assert_same(packed, unpacked)


def test_packing_needs_max_length(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="packing needs max_length"):
        _one_step(tiny_model_dir, tmp_path, make_rows(2), batch=1, accum=1, packing=True)


def _padding(batches, lengths):
    return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)


def test_length_grouping_cuts_padding_and_keeps_every_sample_once(tiny_model_dir, tmp_path):
    rnd = random.Random(0)
    rows = [{"input_ids": [5] * n, "labels": [5] * n} for n in (rnd.randint(5, 260) for _ in range(256))]
    lengths = [len(r["input_ids"]) for r in rows]
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, use_cpu=True, report_to=[], seed=0)

    def batches(group):
        tr = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), group_by_length=group)
        order = list(tr._get_train_sampler())
        assert sorted(order) == list(range(len(rows)))  # every sample exactly once per epoch
        return [order[i : i + 8] for i in range(0, len(order), 8)]

    grouped, shuffled = _padding(batches(True), lengths), _padding(batches(False), lengths)
    assert grouped < 0.5 * shuffled, (grouped, shuffled)


def test_sftune_train_with_packing_end_to_end(tiny_model_dir, tmp_path):
    import json

    from sftune.config import SFTConfig
    from sftune.train.run import train

    rows = [
        {"messages": [{"role": "user", "content": f"What is {a} plus {b}?"}, {"role": "assistant", "content": f"{a} plus {b} is {a + b}."}]}
        for a in range(5) for b in range(4)
    ]
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = SFTConfig(
        model=str(tiny_model_dir), data=[str(data)], output_dir=str(tmp_path / "out"), max_steps=3,
        per_device_train_batch_size=2, packing=True, max_length=256, learning_rate=1e-2, logging_steps=1,
        report_to=["none"], precision="fp32", eval_questions=[], cache_dir=str(tmp_path / "cache"), warmup_ratio=0.0,
    )
    res = train(cfg, progress=False, compare=False)
    entries = [json.loads(line) for line in (res.output_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in entries if "loss" in e]
    assert len(losses) == 3 and all(0 < x < 20 for x in losses)
    assert list(res.output_dir.glob("*.safetensors"))  # the trained weights were written


def test_tokens_seen_counts_every_real_token_when_pad_is_eos(tiny_model_dir, smol_tokenizer, tmp_path):
    # SmolLM2's pad token is its EOS. Packed batches have no attention_mask, and counting by pad id
    # would miss every EOS inside the samples; the padding tail must still not count.
    eos = smol_tokenizer.eos_token_id
    assert smol_tokenizer.pad_token_id == eos
    rows = make_rows(12, seed=11)
    for r in rows:  # every sample ends with a trained EOS, as chat samples do
        r["input_ids"].append(eos)
        r["labels"].append(eos)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=2, num_train_epochs=1, use_cpu=True, report_to=[],
        save_strategy="no", disable_tqdm=True, remove_unused_columns=False, include_num_input_tokens_seen="non_padding",
    )
    tr = SFTTrainer(model=model, args=args, train_dataset=pack(Dataset.from_list(rows), 64, seed=args.seed),
                    processing_class=smol_tokenizer)
    tr.train()
    assert tr.state.num_input_tokens_seen == sum(len(r["input_ids"]) for r in rows)


def test_length_grouping_is_ignored_for_packed_rows(tiny_model_dir, tmp_path, caplog):
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=2, use_cpu=True, report_to=[], seed=0)
    tr = SFTTrainer(model=model, args=args, train_dataset=pack(Dataset.from_list(make_rows(12)), 64), group_by_length=True)
    assert "group_by_length has no effect with packing" in caplog.text
    assert not tr.group_by_length_
