"""NEFTune through sftune's trainer: noise of the right size in training, none in eval, gone after."""

from __future__ import annotations

import math

import datasets
import torch
from transformers import AutoModelForCausalLM, TrainerCallback, TrainingArguments

from sftune.train.trainer import SFTTrainer

ALPHA = 5.0


class Probe(TrainerCallback):
    """Records the embedding layer's output (after NEFTune's hook) in training and eval mode."""

    def __init__(self, model):
        self.model = model
        self.train_noise, self.eval_noise = [], []
        self.handle = None

    def _hook(self, module, inputs, output):
        clean = torch.nn.functional.embedding(inputs[0], module.weight)
        (self.train_noise if module.training else self.eval_noise).append((output - clean).detach())

    def on_train_begin(self, args, state, control, **kw):
        emb = self.model.get_input_embeddings()
        self.handle = emb.register_forward_hook(self._hook)  # registered after NEFTune's: sees its output

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == 1:
            self.model.eval()
            with torch.no_grad():
                self.model(input_ids=torch.tensor([[5, 6, 7, 8]]))
            self.model.train()

    def on_train_end(self, args, state, control, **kw):
        self.handle.remove()


def test_neftune_noise_magnitude_training_only(tiny_model_dir, smol_tokenizer, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    rows = [{"input_ids": list(range(10, 10 + n)), "labels": list(range(10, 10 + n))} for n in (24, 24, 24, 24)]
    probe = Probe(model)
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, neftune_noise_alpha=ALPHA,
        report_to=[], use_cpu=True, save_strategy="no", remove_unused_columns=False, disable_tqdm=True,
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=datasets.Dataset.from_list(rows), processing_class=smol_tokenizer,
        callbacks=[probe],
    )
    trainer.train()

    seq_len, hidden = 24, model.config.hidden_size
    mag = ALPHA / math.sqrt(seq_len * hidden)
    noise = torch.cat([n.flatten() for n in probe.train_noise])
    assert noise.numel() == 2 * 4 * seq_len * hidden  # two training forward passes
    assert noise.abs().max() <= mag * (1 + 1e-5)
    # uniform on [-mag, mag]: standard deviation mag / sqrt(3), mean 0
    assert abs(noise.std().item() - mag / math.sqrt(3)) < 0.05 * mag
    assert abs(noise.mean().item()) < 0.05 * mag
    assert probe.eval_noise and all(torch.count_nonzero(n) == 0 for n in probe.eval_noise)

    # After training the hook is removed: a training-mode forward pass is clean again.
    emb = model.get_input_embeddings()
    model.train()
    ids = torch.tensor([[5, 6, 7]])
    assert torch.equal(emb(ids), torch.nn.functional.embedding(ids, emb.weight))
