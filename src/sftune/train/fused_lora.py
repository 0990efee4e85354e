"""LoRA linears without peft's element-wise passes: the base product added into the adapter's by the matmul.

On a CPU in float32 the matrix products run near the machine's peak, so what is left to win is
element-wise work: every pass over a ``tokens × features`` tensor is memory traffic. peft
computes ``base(x) + B(A(dropout(x))) * scaling``: three full-size temporaries per adapted
linear (``B(...)``, ``* scaling``, ``+``) and a full-size multiply in the backward, seven times
per decoder layer when all linear layers are targeted. Here the scaling goes onto the rank-``r``
activations (``tokens × r``, tiny) and the base product is accumulated into the adapter's output
by the matrix product itself (``addmm_``, ``beta = 1``): the same sum, no element-wise pass.

Only vanilla LoRA on a plain ``nn.Linear`` with one active adapter takes this path, checked on
every call; DoRA and the other variants, merged or disabled adapters, mixed-adapter batches,
quantized bases and ZeRO-3-partitioned weights run peft's own forward. :func:`fused_lora_linears`
switches it on for a block (training) and restores peft's forward on exit. Results equal peft's
within float32 rounding (``tests/train/test_fused_lora.py``).

Measured (benchmarks/README.md, "Speed"): one SmolLM2 decoder layer's LoRA step 2.6% faster on
this project's CPU; the whole LoRA benchmark +3.4% tokens/s and 0.4 GB less peak memory (peft's
scaled output is no longer kept for the backward). ``F.rms_norm`` in place of the models'
RMSNorm was measured too and is slower on a CPU (torch 2.13 runs it as separate kernels), so
norms are left alone.
"""

from __future__ import annotations

import contextlib
import types

import torch
from torch import nn


def _lora_linear_class():
    try:
        from peft.tuners.lora.layer import Linear
    except ImportError:  # pragma: no cover - peft is a dependency, but keep full fine-tuning independent of it
        return None
    return Linear


def _vanilla_adapter(module) -> str | None:
    """The one active vanilla-LoRA adapter of a peft ``lora.Linear`` on an ``nn.Linear``, else None."""
    if module.disable_adapters or module.merged or getattr(module, "fan_in_fan_out", False):
        return None
    if type(module.base_layer) is not nn.Linear:  # quantized or otherwise special base layers: peft's path
        return None
    if hasattr(module.base_layer.weight, "ds_id"):
        # DeepSpeed ZeRO-3 gathers a partitioned weight in the hooks of the module's own forward,
        # which the fused product bypasses.
        return None
    active = [a for a in module.active_adapters if a in module.lora_A]
    if len(active) != 1:
        return None
    name = active[0]
    if name in getattr(module, "lora_variant", {}) or getattr(module, "use_dora", {}).get(name, False):
        return None
    if module.lora_B[name].bias is not None:
        return None
    return name


def fused_lora_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """``base(x) + B(A(dropout(x))) * scaling`` as ``mm(A(dropout(x)) * scaling, Bᵀ) += x Wᵀ``.

    Installed on a peft ``lora.Linear`` instance; anything but the vanilla single-adapter case
    (checked on every call: adapters can be switched between calls) goes to peft's forward.
    """
    name = None if (args or kwargs) else _vanilla_adapter(self)
    if name is None:
        return type(self).forward(self, x, *args, **kwargs)
    base, lora_a, lora_b = self.base_layer, self.lora_A[name], self.lora_B[name]
    scaling = self.scaling[name]
    x2 = x.reshape(-1, x.shape[-1])
    h = lora_a(self.lora_dropout[name](x2.to(lora_a.weight.dtype)))  # (tokens, r): autocast applies as in peft
    if scaling != 1:
        h = h * scaling
    device = x.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    with torch.autocast(device, enabled=False):
        # What autocast would do for peft's F.linear calls: products in its dtype.
        w, b_w = (base.weight, lora_b.weight) if dtype is None else (base.weight.to(dtype), lora_b.weight.to(dtype))
        xin = x2 if dtype is None else x2.to(dtype)
        h = h.to(b_w.dtype)
        out = torch.mm(h, b_w.t())  # mm's backward keeps its inputs, not its output: safe to add into
        out.addmm_(xin.to(w.dtype), w.t())
        if base.bias is not None:
            out.add_(base.bias.to(out.dtype))
    return out.view(*x.shape[:-1], out.shape[-1])


def _install(model) -> list:
    cls = _lora_linear_class()
    if cls is None:
        return []
    done = []
    for module in model.modules():
        if type(module) is cls and "forward" not in vars(module) and _vanilla_adapter(module) is not None:
            module.forward = types.MethodType(fused_lora_forward, module)
            done.append(module)
    return done


@contextlib.contextmanager
def fused_lora_linears(model):
    """peft LoRA linears of ``model`` on :func:`fused_lora_forward` while the block runs; yields how many."""
    installed = _install(model)
    try:
        yield len(installed)
    finally:
        for module in installed:
            vars(module).pop("forward", None)
