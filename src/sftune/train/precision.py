"""Choosing the compute precision: bf16 wherever the hardware runs it fast, float32 otherwise.

On CPUs with Intel AMX (``amx_bf16``) or AVX-512-BF16 a bf16 matrix product runs several times
faster than float32; on CPUs without them (e.g. AVX2-only parts) bf16 is emulated and can be
hundreds of times *slower*. So ``auto`` decides from the CPU flags, never from the dtype's mere
availability in torch. Training keeps float32 master weights and optimizer states either way:
bf16 is used through autocast (``TrainingArguments(bf16=True)``), so the loss, softmax and
normalisation layers that autocast keeps in float32 stay there.

>>> choose_precision("fp32")
('fp32', 'asked for with --precision fp32')
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("sftune")

FAST_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(path: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags (Linux); an empty set where they cannot be read."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _cuda_state():
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(0), torch.cuda.is_bf16_supported()


def choose_precision(requested: str = "auto", *, flags: set[str] | None = None, cuda=...) -> tuple[str, str]:
    """Return ``(precision, reason)`` with precision one of fp32, bf16, fp16.

    ``flags`` and ``cuda`` (``None`` or ``(name, bf16_supported)``) are read from the machine
    unless given (tests pass them).
    """
    cuda = _cuda_state() if cuda is ... else cuda
    flags = cpu_flags() if flags is None else flags
    if requested != "auto":
        if requested == "fp16" and cuda is None:
            raise ValueError("--precision fp16 needs a CUDA GPU (CPU autocast has no fp16 path); use bf16 or fp32")
        if requested == "bf16" and cuda is None and not flags & set(FAST_BF16_CPU_FLAGS):
            log.warning(
                "--precision bf16 on a CPU without AMX/AVX-512-BF16: bf16 is emulated here and much slower than fp32"
            )
        return requested, f"asked for with --precision {requested}"
    if cuda is not None:
        name, bf16_ok = cuda
        if bf16_ok:
            return "bf16", f"GPU {name} supports bf16"
        return "fp16", f"GPU {name} has no bf16; fp16 with loss scaling"
    fast = sorted(flags & set(FAST_BF16_CPU_FLAGS))
    if fast:
        return "bf16", f"CPU has {', '.join(fast)}: bf16 matrix products run several times faster than float32"
    return "fp32", "CPU has neither AMX nor AVX-512-BF16, where bf16 would be emulated and slower than float32"


def training_args_for(precision: str, *, cuda: bool | None = None) -> dict:
    """TrainingArguments keywords for a precision (autocast with float32 master weights)."""
    import torch

    cuda = torch.cuda.is_available() if cuda is None else cuda
    kw: dict = {} if cuda else {"use_cpu": True}
    if precision == "bf16":
        kw["bf16"] = True
    elif precision == "fp16":
        kw["fp16"] = True
    return kw
