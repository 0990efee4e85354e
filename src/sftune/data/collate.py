"""Batches: dynamic padding. The collator only pads; masks were made once, at tokenization.

>>> c = PaddingCollator(pad_token_id=0)
>>> b = c([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}])
>>> b["input_ids"].tolist(), b["labels"].tolist(), b["attention_mask"].tolist()
([[5, 6, 7], [8, 0, 0]], [[-100, 6, 7], [8, -100, -100]], [[1, 1, 1], [1, 0, 0]])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .tokenize import IGNORE_INDEX


@dataclass
class PaddingCollator:
    """Pad to the longest row in the batch (rounded up to ``pad_to_multiple_of``).

    Padding gets label ``-100`` and attention 0 regardless of the pad token's id, so padding is
    never trained even when the pad token is the EOS token.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    padding_side: str = "right"

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(r["input_ids"]) for r in rows)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            longest = (longest + m - 1) // m * m
        n = len(rows)
        input_ids = torch.full((n, longest), self.pad_token_id, dtype=torch.long)  # (B, T)
        labels = torch.full((n, longest), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((n, longest), dtype=torch.long)
        for i, r in enumerate(rows):
            k = len(r["input_ids"])
            sl = slice(longest - k, longest) if self.padding_side == "left" else slice(0, k)
            input_ids[i, sl] = torch.as_tensor(r["input_ids"], dtype=torch.long)
            labels[i, sl] = torch.as_tensor(r["labels"], dtype=torch.long)
            attention[i, sl] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}
