"""``SFTTrainer``: ``transformers.Trainer`` with sftune's batching.

The Trainer keeps the loop, the optimizer, mixed precision, checkpoints and distribution. What
sftune changes is small: the collator (dynamic padding, masks made once at tokenization) and,
optionally, length-grouped batches so a batch of short chats is not padded to one long one.
Loss normalisation over gradient accumulation is the Trainer's own: with a model that accepts
``num_items_in_batch`` (every ``*ForCausalLM`` in transformers) it divides the summed token
loss by the number of trained tokens in the whole accumulated step, so 1×8 equals 8×1.
"""

from __future__ import annotations

import logging

from transformers import Trainer

from ..data.collate import PaddingCollator

log = logging.getLogger("sftune")


class SFTTrainer(Trainer):
    """A ``Trainer`` over datasets of ``input_ids``/``labels`` rows (see ``sftune.data.prepare``).

    ``group_by_length`` sorts samples by length inside large random mega-batches (the
    Trainer's ``LengthGroupedSampler``), which cuts padding without changing what is trained.
    """

    def __init__(self, *args, packing: bool = False, group_by_length: bool = False, max_length: int | None = None, **kwargs):
        if packing:
            raise ValueError("packing is not available in this build yet; train without --packing (use --group-by-length to cut padding)")
        self.packing = packing
        self.group_by_length_ = group_by_length
        self.max_length = max_length
        tok = kwargs.get("processing_class")
        if kwargs.get("data_collator") is None:
            pad_id = getattr(tok, "pad_token_id", None)
            kwargs["data_collator"] = PaddingCollator(pad_token_id=pad_id if pad_id is not None else 0)
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        ds = train_dataset if train_dataset is not None else self.train_dataset
        if not self.group_by_length_ or ds is None:
            return super()._get_train_sampler(train_dataset)
        from transformers.trainer_pt_utils import LengthGroupedSampler

        lengths = [len(x) for x in ds["input_ids"]]
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return LengthGroupedSampler(batch, dataset=ds, lengths=lengths)
