"""Attention for packed rows, one sample at a time: causal SDPA per segment instead of a masked T² product.

A packed row holds several samples; ``position_ids`` restart at 0 where each begins (see
``sftune.data.packing``). With ``sdpa``, transformers turns those restarts into a block-diagonal
causal mask of the whole row, and SDPA then computes all ``T²`` query-key products and throws
most away (the kernel cannot skip masked blocks of an arbitrary mask). Running causal SDPA on
each sample's own slice computes only ``Σ l_i² / 2`` of them: for 512-token rows of ~150-token
chats about a seventh of the work, and the kernel's causal path skips the upper triangle itself.
The result is the same attention (see ``tests/train/test_speed_attention.py``).

It is registered with transformers as the attention implementation ``"sftune_packed_sdpa"``;
:func:`use_packed_attention` switches a model to it for a block (training) and back. Outside
training mode, or without restarts in ``position_ids``, or with a KV cache (query and key
lengths differ), it is exactly transformers' ``sdpa``.
"""

from __future__ import annotations

import contextlib

import torch

NAME = "sftune_packed_sdpa"


def segments(position_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """Per row, the ``(start, end)`` of each sample: a new one wherever ``position_ids`` is 0.

    >>> segments(torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5]]))
    [[(0, 3), (3, 5), (5, 6)], [(0, 6)]]
    """
    out = []
    length = position_ids.shape[-1]
    for row in position_ids.reshape(-1, length):
        starts = (row == 0).nonzero().flatten().tolist()
        if not starts or starts[0] != 0:
            starts = [0, *starts]
        out.append(list(zip(starts, [*starts[1:], length])))
    return out


@torch.compiler.disable  # data-dependent split (nonzero, tolist): runs eager between compiled graphs
def packed_sdpa_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """transformers' attention-function signature; query (B, H, T, D), key/value (B, KV, T, D) -> (B, T, H, D)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.pop("position_ids", None)
    q_len = query.shape[2]
    if not module.training or position_ids is None or key.shape[2] != q_len or position_ids.shape[-1] != q_len:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    segs = segments(position_ids.expand(query.shape[0], -1))
    if all(len(s) == 1 for s in segs):  # nothing packed: a plain causal row (or padding handled by the mask)
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    rows = []
    for b, row_segs in enumerate(segs):
        parts = [
            sdpa_attention_forward(module, query[b : b + 1, :, s:e], key[b : b + 1, :, s:e], value[b : b + 1, :, s:e], None,
                                   dropout=dropout, scaling=scaling, is_causal=True, **kwargs)[0]  # (1, l, H, D)
            for s, e in row_segs
        ]
        rows.append(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])
    return (torch.cat(rows, dim=0) if len(rows) > 1 else rows[0]), None


def register() -> str:
    """Register :data:`NAME` with transformers (attention and mask functions); idempotent. Returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, packed_sdpa_forward)
    # The same masks as sdpa: used whenever the per-sample path does not apply (eval, generation).
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


def _configs(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    seen, out = set(), []
    for m in base.modules():
        c = getattr(m, "config", None)
        if c is not None and id(c) not in seen and hasattr(c, "_attn_implementation"):
            seen.add(id(c))
            out.append(c)
    return out


@contextlib.contextmanager
def use_packed_attention(model):
    """Switch ``model`` from ``sdpa`` to per-sample attention for the block; other implementations stay as they are.

    Yields whether it was switched (only models running ``sdpa`` are: eager, flex and
    FlashAttention have their own packed paths or semantics).
    """
    configs = [c for c in _configs(model) if c._attn_implementation == "sdpa"]
    if not configs:
        yield False
        return
    register()
    for c in configs:
        c._attn_implementation = NAME
    try:
        yield True
    finally:
        for c in configs:
            c._attn_implementation = "sdpa"
