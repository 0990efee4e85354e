"""``SFTTrainer``: ``transformers.Trainer`` with sftune's batching and loss.

The Trainer keeps the loop, the optimizer, mixed precision, checkpoints and distribution. What
sftune changes is small and visible here:

* the collator: dynamic padding for samples (masks were made once, at tokenization), or, for
  rows packed before training (``sftune.data.packing.pack``), ``position_ids`` restarting per
  sample so no token attends to another sample;
* optionally, length-grouped batches so a batch of short chats is not padded to one long one;
* the loss: a chunked cross-entropy that runs the LM head only on trained tokens and never holds
  the ``[tokens, vocab]`` logits (``sftune.train.loss``), normalised by the trained tokens of the
  whole accumulated step across processes (the Trainer's ``num_items_in_batch``), so 1×8
  accumulation equals 8×1. It is installed in the model's own forward before the Trainer wraps
  the model, so DDP, FSDP, DeepSpeed and torch.compile run it as they run any forward. Models it
  cannot handle keep their own loss (logged once).
"""

from __future__ import annotations

import logging

import torch
from transformers import Trainer

from ..data.collate import PaddingCollator
from ..data.packing import PackingCollator
from .distributed import use_fsdp_on_cpu
from .loss import install_chunked_forward, keep_eval_logits, register_head_with_zero3, remove_chunked_forward

log = logging.getLogger("sftune")


class SFTTrainer(Trainer):
    """A ``Trainer`` over datasets of ``input_ids``/``labels`` rows (see ``sftune.data.prepare``).

    The training data arrives ready: samples, or rows packed by ``sftune.data.packing.pack``
    (they carry ``seq_lengths``; then ``per_device_train_batch_size`` counts packed rows). The
    trainer only picks the collator for each batch. ``group_by_length`` sorts samples by length
    inside large random mega-batches (the Trainer's ``LengthGroupedSampler``), which cuts padding
    without changing what is trained. ``chunked_loss=False`` keeps the model's own loss.
    """

    def __init__(self, *args, group_by_length: bool = False, chunked_loss: bool = True, **kwargs):
        self.chunked_loss = chunked_loss
        tok = kwargs.get("processing_class")
        pad_id = getattr(tok, "pad_token_id", None)
        pad_id = pad_id if pad_id is not None else 0
        if group_by_length and "seq_lengths" in getattr(kwargs.get("train_dataset"), "column_names", ()):
            log.warning("group_by_length has no effect with packing (packed rows are already nearly full)")
            group_by_length = False
        self.group_by_length_ = group_by_length
        if kwargs.get("data_collator") is None:
            kwargs["data_collator"] = _Collator(PackingCollator(pad_id), PaddingCollator(pad_token_id=pad_id))
        model = kwargs["model"] if "model" in kwargs else (args[0] if args else None)
        self.loss_note = _set_up_loss(model, chunked_loss)
        super().__init__(*args, **kwargs)
        if self.loss_note is None and self.is_deepspeed_enabled and self.accelerator.state.deepspeed_plugin.zero_stage == 3:
            register_head_with_zero3(model)
        if self.loss_note is None:
            keep_eval_logits(model, self.compute_metrics is not None)  # metrics need the logits

    def create_accelerator_and_postprocess(self):
        super().create_accelerator_and_postprocess()
        if use_fsdp_on_cpu(self.accelerator, self.args.fsdp_plugin_args):
            self.is_fsdp_enabled = True

    save_dtype = None
    """The dtype a gathered full state dict (FSDP, ZeRO-3) is written in; see ``distributed.save_model``."""

    def _save(self, output_dir=None, state_dict=None):
        if state_dict:  # gathered from shards (FSDP, DeepSpeed): copies, no longer sharing storage
            state_dict = _without_tied_copies(self.accelerator.unwrap_model(self.model), state_dict)
            if self.save_dtype is not None and not hasattr(self.model, "peft_config"):
                state_dict = {k: v.to(self.save_dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
        super()._save(output_dir, state_dict=state_dict)

    def _get_train_sampler(self, train_dataset=None):
        ds = train_dataset if train_dataset is not None else self.train_dataset
        if not self.group_by_length_ or ds is None:
            return super()._get_train_sampler(train_dataset)
        from transformers.trainer_pt_utils import LengthGroupedSampler

        lengths = [len(x) for x in ds["input_ids"]]
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return LengthGroupedSampler(batch, dataset=ds, lengths=lengths)

    def _track_num_input_tokens(self, inputs):
        # Packed batches carry no attention_mask (see PackingCollator), so the Trainer would count
        # "non-padding" tokens by pad id, and miss every EOS when pad == EOS (SmolLM2, Qwen, ...).
        if (
            self.args.include_num_input_tokens_seen == "non_padding"
            and "position_ids" in inputs
            and "attention_mask" not in inputs
        ):
            n = torch.as_tensor(packed_real_tokens(inputs, self.processing_class.pad_token_id), device=self.args.device)
            self.state.num_input_tokens_seen += self.accelerator.gather(n).sum().item()
            return
        super()._track_num_input_tokens(inputs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "position_ids" in inputs:
            # Packed rows: transformers derives the per-sample attention from position_ids only
            # without a KV cache (and the cache is useless in training anyway).
            inputs = {**inputs, "use_cache": False}
        # The chunked loss, when installed, runs inside model.forward (see sftune.train.loss): the
        # Trainer's own compute_loss passes num_items_in_batch (trained tokens of the whole
        # accumulated step across processes) and scales by the process count as for any model.
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)


def packed_real_tokens(batch: dict, pad_token_id: int) -> int:
    """Real tokens in a :class:`PackingCollator` batch: everything but each row's padding tail.

    The tail is the row's last segment (``position_ids`` restart there) when it is all pad ids
    and all untrained; a real sample always has a trained token, so it never looks like that.

    >>> import torch
    >>> b = {"input_ids": torch.tensor([[5, 2, 7, 2, 2, 2]]), "labels": torch.tensor([[-100, 2, -100, 2, -100, -100]]),
    ...      "position_ids": torch.tensor([[0, 1, 0, 1, 0, 1]])}
    >>> packed_real_tokens(b, pad_token_id=2)  # two samples of 2 tokens (ending in EOS == pad), 2 padding
    4
    """
    ids, labels, pos = batch["input_ids"], batch["labels"], batch["position_ids"]
    total = ids.numel()
    for r in range(ids.shape[0]):
        starts = (pos[r] == 0).nonzero().flatten()
        last = int(starts[-1]) if len(starts) else 0
        if last > 0 and bool((labels[r, last:] == -100).all()) and bool((ids[r, last:] == pad_token_id).all()):
            total -= ids.shape[1] - last
    return total


def _without_tied_copies(model, state_dict: dict) -> dict:
    """Drop the second name of each tied parameter (lm_head.weight when it is the embedding).

    save_pretrained recognises ties by shared storage; a state dict gathered from shards holds
    separate copies, so the folder would carry a redundant lm_head.weight the base model lacks.
    """
    first, drop = {}, set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first and name in state_dict:
            drop.add(name)
        first.setdefault(id(p), name)
    return {k: v for k, v in state_dict.items() if k not in drop}


def _set_up_loss(model, chunked: bool, why: str = "chunked_loss=False") -> str | None:
    """Install the chunked loss in ``model``'s forward, or keep its own; log which. None when installed, else why not."""
    if model is None:
        return "no model given"
    why = why if not chunked else install_chunked_forward(model)
    if why:
        remove_chunked_forward(model)
        log.info("loss: the model's own cross-entropy (chunked loss not used: %s)", why)
    else:
        log.info("loss: chunked cross-entropy over trained tokens only, inside the model's forward")
    return why


class _Collator:
    """Packed rows (with ``seq_lengths``) through the packing collator, plain samples through the padding one."""

    def __init__(self, packing: PackingCollator, padding: PaddingCollator):
        self.packing, self.padding = packing, padding

    def __call__(self, rows):
        if rows and isinstance(rows[0], dict) and "seq_lengths" in rows[0]:
            return self.packing(rows)
        return self.padding([{k: r[k] for k in ("input_ids", "labels")} for r in rows])
