"""Chunked cross-entropy over the LM head: the loss without the ``[tokens, vocab]`` logits.

A causal LM's own loss computes float32 logits for every position (SmolLM2: 49,152 per token,
so 8 × 264 tokens already take 415 MB, and autograd keeps them plus their softmax for the
backward). Here the decoder's hidden states are computed once, only the positions that are
trained (label != -100 after the shift: no prompt, no padding) go through the LM head, in
chunks, and each chunk's gradient is computed right away in the forward pass; the backward
then only scales the stored gradients. Peak extra memory is one chunk of logits.

The returned loss is ``sum of token losses / num_items_in_batch``: the Trainer passes the number
of trained tokens of the whole accumulated step (across processes with
``average_tokens_across_devices``), so 1 × 8 accumulation equals 8 × 1.
"""

from __future__ import annotations

import logging
import types

import torch
from torch import nn

from ..data.tokenize import IGNORE_INDEX

log = logging.getLogger("sftune")

CHUNK_TOKENS = 1024
"""Trained tokens per LM-head chunk: 1024 × 49,152 float32 logits is 200 MB, small next to the model's activations."""


def _matmul_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype autocast would run a matmul in (bf16 under CPU/GPU autocast), else the tensor's own."""
    dev = t.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return t.dtype


class LinearCrossEntropy(torch.autograd.Function):
    """``sum(cross_entropy(hidden @ weight.T + bias, targets))``, chunk by chunk, gradient computed in forward.

    hidden (N, H), weight (V, H), bias (V,) or None, targets (N,). Logits are made in the matmul
    dtype (bf16 under autocast) and the log-softmax in float32.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk: int):
        mm = _matmul_dtype(hidden)
        need_h, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], bias is not None and ctx.needs_input_grad[2]
        w = weight.to(mm)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = None  # (V, H) float32: the first chunk's product, later chunks add into it (no zero fill)
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None
        for s in range(0, hidden.shape[0], chunk):
            h = hidden[s : s + chunk].to(mm)  # (C, H)
            t = targets[s : s + chunk]
            logits = (h @ w.t()).float()  # (C, V), float32 for the softmax
            if bias is not None:
                logits += bias.float()
            lse = torch.logsumexp(logits, dim=-1)  # (C,)
            total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            if need_h or need_w or need_b:
                # d(sum loss)/d logits = softmax - onehot, reusing the logits buffer
                g = logits.sub_(lse[:, None]).exp_()
                g[torch.arange(len(t), device=t.device), t] -= 1.0
                if need_b:
                    grad_b += g.sum(0)
                g = g.to(mm)
                if need_h:
                    grad_h[s : s + chunk] = (g @ w).to(hidden.dtype)
                if need_w:
                    gw = (g.t() @ h).float()  # (V, H); a no-op cast in float32
                    grad_w = gw if grad_w is None else grad_w.add_(gw)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        gh = grad_h * grad_out.to(grad_h.dtype) if grad_h is not None else None
        gw = (grad_w * grad_out).to(ctx.weight_dtype) if grad_w is not None else None
        gb = (grad_b * grad_out).to(ctx.weight_dtype) if grad_b is not None else None
        return gh, gw, gb, None, None


def linear_cross_entropy_sum(hidden, weight, bias, targets, chunk: int = CHUNK_TOKENS) -> torch.Tensor:
    """Summed token cross-entropy of ``hidden @ weight.T (+ bias)`` against ``targets`` (float32 scalar)."""
    return LinearCrossEntropy.apply(hidden, weight, bias, targets, chunk)


def chunked_parts(model):
    """``(decoder, lm_head)`` when the chunked loss can replace the model's own, else ``(None, reason)``.

    Works on a plain ``*ForCausalLM`` and on a peft model whose adapters live inside the layers
    (LoRA, DoRA, IA3...). Not for prompt/prefix tuning (virtual tokens are prepended inside
    peft's forward), LM heads that are not a plain ``nn.Linear`` (an adapter on the head itself),
    or models that post-process logits (soft-capping, logit scales).
    """
    if is_prompt_learning(model):
        return None, "prompt/prefix tuning prepends virtual tokens inside peft's forward"
    base = _causal_lm(model)
    get_head = getattr(base, "get_output_embeddings", None)
    head = get_head() if get_head else None
    if type(head) is not nn.Linear:
        return None, f"its LM head is {type(head).__name__}, not a plain nn.Linear"
    config = getattr(base, "config", None)
    for attr in ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale"):
        if getattr(config, attr, None) not in (None, 1, 1.0):
            return None, f"it rescales its logits ({attr})"
    decoder = separate_decoder(base)
    if decoder is None:
        return None, f"{type(base).__name__} has no separate decoder (get_decoder())"
    return (decoder, head), None


def is_prompt_learning(model) -> bool:
    """A peft model whose active adapter is prompt/prefix tuning (virtual tokens prepended to every row)."""
    peft_cfg = getattr(model, "peft_config", None)
    cfg = peft_cfg.get(getattr(model, "active_adapter", "default")) if isinstance(peft_cfg, dict) else peft_cfg
    return bool(getattr(cfg, "is_prompt_learning", False))


def separate_decoder(base):
    """``base.get_decoder()`` when the causal LM has a decoder apart from itself, else None."""
    get_dec = getattr(base, "get_decoder", None)
    try:
        decoder = get_dec() if get_dec else None
    except Exception:  # noqa: BLE001 - an architecture without a separable decoder
        decoder = None
    return None if decoder is base else decoder


def chunked_causal_lm_loss(decoder, head, inputs: dict, num_items_in_batch=None, chunk: int = CHUNK_TOKENS) -> torch.Tensor:
    """Causal-LM loss through ``decoder`` and ``head`` with only trained positions in the LM head.

    ``inputs``: ``input_ids`` (B, T), ``labels`` (B, T), optionally ``attention_mask`` or
    ``position_ids`` (packed rows). Same value as the model's own loss with the same
    ``num_items_in_batch`` (or the mean over trained tokens when it is None).
    """
    labels = inputs["labels"]
    fwd = {k: v for k, v in inputs.items() if k not in ("labels", "shift_labels", "use_cache")}
    hidden = decoder(**fwd, use_cache=False).last_hidden_state  # (B, T, H)
    if "shift_labels" in inputs:
        targets = inputs["shift_labels"]
    else:
        targets = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)  # target of position t is label t+1
    keep = targets != IGNORE_INDEX  # (B, T)
    h = hidden[keep]  # (N, H): only the trained positions reach the LM head
    t = targets[keep]
    if _is_dtensor(head.weight):
        # FSDP2 swaps in the gathered weight when the head's unit is unsharded; accelerate puts the
        # head in one unit with the final norm (and the tied embedding), which the decoder's forward
        # has just unsharded. A setup that leaves it sharded here gathers it only around the head's
        # own forward: call the head then, on the trained positions only (logits not chunked).
        _warn_once("loss: the LM head is still sharded after the decoder (its own FSDP unit); calling it unchunked")
        total = nn.functional.cross_entropy(head(h).float(), t, reduction="sum")
    else:
        total = linear_cross_entropy_sum(h, head.weight, head.bias, t, chunk)
    denom = num_items_in_batch if num_items_in_batch is not None else keep.sum().clamp(min=1)
    if torch.is_tensor(denom):
        denom = denom.to(total.device)
    return total / denom


# --- the chunked loss inside the model's forward ---------------------------------------------
#
# DDP prepares its gradient reducer, FSDP gathers the sharded weights and DeepSpeed ZeRO-3 fetches
# its partitions in the hooks around the ROOT module's call, and torch.compile compiles that call.
# A loss that reached into the decoder from outside would skip all of them. So the chunked loss
# runs inside the causal LM's own ``forward``: an instance attribute on the plain model, set
# before the Trainer wraps it. The module's class (and so save_pretrained, peft, the FSDP/DDP
# wrapping) is unchanged; without labels (generation) the class's forward runs as before.

_MODEL_ONLY = ("labels", "shift_labels", "num_items_in_batch", "logits_to_keep", "return_dict", "use_cache")


def install_chunked_forward(model) -> str | None:
    """Make ``model(**batch)`` with ``labels`` return the chunked loss; None when done, else why it can't.

    ``model`` is a ``*ForCausalLM`` or a peft model over one; the override goes on the causal LM
    (a peft model's forward calls it), so whatever wraps ``model`` later runs it inside its own
    forward. ``remove_chunked_forward`` undoes it.
    """
    _, why = chunked_parts(model)
    if why:
        return why
    base = _causal_lm(model)
    base.forward = types.MethodType(_chunked_forward, base)  # a copy.deepcopy rebinds it to the copy
    return None


def remove_chunked_forward(model) -> None:
    base = _causal_lm(model)
    if isinstance(base.__dict__.get("forward"), types.MethodType) and base.__dict__["forward"].__func__ is _chunked_forward:
        del base.forward


def keep_eval_logits(model, keep: bool) -> None:
    """In eval mode, run the model's own forward (with logits) instead: ``compute_metrics`` needs them."""
    _causal_lm(model)._sftune_eval_logits = keep


def register_head_with_zero3(model) -> None:
    """Under DeepSpeed ZeRO-3, have the causal LM's forward gather the LM head's weight.

    ZeRO-3 gathers a partitioned weight around its own module's forward; the chunked loss reads
    the head's weight without calling the head, so the weight is declared an "external parameter"
    of the causal LM (DeepSpeed's documented hook for exactly this), gathered for its whole forward
    and backward.
    """
    from deepspeed.runtime.zero.partition_parameters import register_external_parameter

    base = _causal_lm(model)
    head = base.get_output_embeddings()
    for p in (head.weight, head.bias):
        if p is not None:
            register_external_parameter(base, p)


def _causal_lm(model):
    return model.get_base_model() if getattr(model, "peft_config", None) is not None else model


def _chunked_forward(self, input_ids=None, labels=None, num_items_in_batch=None, **kwargs):
    # Looked up per call, not captured: FSDP may swap the head's class, a deepcopy has its own.
    decoder, head = self.get_decoder(), self.get_output_embeddings()
    if labels is None or (not self.training and getattr(self, "_sftune_eval_logits", False)):
        if num_items_in_batch is not None:
            kwargs["num_items_in_batch"] = num_items_in_batch
        return type(self).forward(self, input_ids=input_ids, labels=labels, **kwargs)
    from transformers.modeling_outputs import CausalLMOutputWithPast

    batch = {k: v for k, v in kwargs.items() if k not in _MODEL_ONLY and v is not None}
    batch.update(input_ids=input_ids, labels=labels)
    if kwargs.get("shift_labels") is not None:
        batch["shift_labels"] = kwargs["shift_labels"]
    loss = chunked_causal_lm_loss(decoder, head, batch, num_items_in_batch)
    return CausalLMOutputWithPast(loss=loss)


def _is_dtensor(t) -> bool:
    return _DTensor is not None and isinstance(t, _DTensor)


try:
    from torch.distributed.tensor import DTensor as _DTensor
except ImportError:  # torch built without distributed support
    _DTensor = None


_warned: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        log.warning(msg)
