"""Device and precision: one vocabulary (``auto | fp32 | bf16 | fp16``) and one "auto" choice.

Training, chat, generate, serve, eval, merge and the saved weights all name a precision the same
way and resolve "auto" here, so a setting means the same thing wherever it is used.

On CPUs with Intel AMX (``amx_bf16``) or AVX-512-BF16 a bf16 matrix product runs several times
faster than float32; on CPUs without them (e.g. AVX2-only parts) bf16 is emulated and can be
hundreds of times *slower*. So ``auto`` decides from the CPU flags, never from the dtype's mere
availability in torch. Training keeps float32 master weights and optimizer states either way:
bf16 is used through autocast (``TrainingArguments(bf16=True)``), so the loss, softmax and
normalisation layers that autocast keeps in float32 stay there. Inference has no autocast: the
weights themselves are loaded in the chosen dtype.

>>> parse_precision("bfloat16"), parse_precision("torch.float32"), parse_precision("half")
('bf16', 'fp32', 'fp16')
>>> choose_precision("fp32")
('fp32', 'asked for with --precision fp32')
>>> choose_precision("auto", flags={"avx2"}, cuda=None)[0], choose_precision("auto", flags={"amx_bf16"}, cuda=None)[0]
('fp32', 'bf16')
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

from ..errors import ConfigError

log = logging.getLogger("sftune")

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
Purpose = Literal["training", "inference"]

FAST_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
#: Where the CPU flags are read from (Linux); tests point it at a fake file.
CPUINFO = "/proc/cpuinfo"

#: Every spelling accepted for a precision: ours, torch's dtype names, and the usual short ones.
_ALIASES = {
    "auto": "auto",
    "fp32": "fp32", "float32": "fp32", "float": "fp32",
    "bf16": "bf16", "bfloat16": "bf16",
    "fp16": "fp16", "float16": "fp16", "half": "fp16",
}
_TORCH_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class PrecisionError(ConfigError):
    """A precision or dtype name sftune does not know, or one the hardware cannot run."""


def parse_precision(value, *, what: str = "precision") -> str:
    """One of ``auto, fp32, bf16, fp16`` for a name, an alias, or a ``torch.dtype``.

    ``what`` names the setting in the error (``--precision``, ``save_dtype``, a config file field).

    >>> parse_precision("BF16"), parse_precision("float16")
    ('bf16', 'fp16')
    >>> parse_precision("int8", what="save_dtype")
    Traceback (most recent call last):
    ...
    sftune.model.precision.PrecisionError: save_dtype: unknown precision 'int8'
      fix: use one of auto, fp32, bf16, fp16 (or float32, bfloat16, float16)
    """
    name = str(value).strip().lower().removeprefix("torch.")
    if name in _ALIASES:
        return _ALIASES[name]
    raise PrecisionError(
        f"{what}: unknown precision {value!r}\n  fix: use one of {', '.join(PRECISIONS)} (or float32, bfloat16, float16)"
    )


def torch_dtype(precision):
    """The ``torch.dtype`` of a concrete precision (``auto`` must be resolved first).

    >>> torch_dtype("bf16"), torch_dtype("float32")
    (torch.bfloat16, torch.float32)
    """
    import torch

    p = parse_precision(precision)
    if p == "auto":
        raise PrecisionError("'auto' has no dtype of its own\n  fix: resolve it first with choose_precision()")
    return getattr(torch, _TORCH_NAMES[p])


def cpu_flags(path: str | Path | None = None) -> set[str]:
    """The CPU feature flags (from :data:`CPUINFO` unless ``path``); an empty set where they cannot be read."""
    try:
        for line in Path(path or CPUINFO).read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def choose_device(device: str | None = None) -> str:
    """``device`` when given, else ``cuda`` when a GPU is visible, else ``cpu``."""
    if device:
        return str(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _cuda_state(device: str | None = None):
    """``(name, bf16_supported)`` of the GPU that will run, or ``None`` when it runs on the CPU."""
    import torch

    if (device is not None and not str(device).startswith("cuda")) or not torch.cuda.is_available():
        return None
    index = torch.device(device).index if device else None
    return torch.cuda.get_device_name(index), torch.cuda.is_bf16_supported()


def choose_precision(
    requested="auto", *, purpose: Purpose = "training", device: str | None = None, flags: set[str] | None = None, cuda=...
) -> tuple[str, str]:
    """Return ``(precision, reason)`` with precision one of fp32, bf16, fp16.

    ``requested`` is any spelling :func:`parse_precision` reads (``None`` means ``auto``). ``purpose`` matters on a GPU
    without bf16: training runs fp16 autocast with loss scaling, inference keeps float32 weights
    (fp16 weights without autocast's float32 islands can overflow). ``device`` (default: the
    GPU when one is visible) says which hardware runs it. ``flags`` and ``cuda`` (``None`` or
    ``(name, bf16_supported)``) are read from the machine unless given (tests pass them).
    """
    requested = parse_precision("auto" if requested is None else requested)
    cuda = _cuda_state(device) if cuda is ... else cuda
    flags = cpu_flags() if flags is None else flags
    if requested != "auto":
        if requested == "fp16" and cuda is None:
            if purpose == "training":
                raise PrecisionError("--precision fp16 needs a CUDA GPU (CPU autocast has no fp16 path); use bf16 or fp32")
            log.warning("precision fp16 on a CPU: float16 matrix products are slow here; fp32 is usually faster")
        if requested == "bf16" and cuda is None and not flags & set(FAST_BF16_CPU_FLAGS):
            log.warning(
                "--precision bf16 on a CPU without AMX/AVX-512-BF16: bf16 is emulated here and much slower than fp32"
            )
        return requested, f"asked for with --precision {requested}"
    if cuda is not None:
        name, bf16_ok = cuda
        if bf16_ok:
            return "bf16", f"GPU {name} supports bf16"
        if purpose == "training":
            return "fp16", f"GPU {name} has no bf16; fp16 with loss scaling"
        return "fp32", f"GPU {name} has no bf16; float32 weights (fp16 weights can overflow without autocast)"
    fast = sorted(flags & set(FAST_BF16_CPU_FLAGS))
    if fast:
        return "bf16", f"CPU has {', '.join(fast)}: bf16 matrix products run several times faster than float32"
    return "fp32", "CPU has neither AMX nor AVX-512-BF16, where bf16 would be emulated and slower than float32"


def inference_dtype(precision="auto", *, device: str | None = None):
    """The ``torch.dtype`` to load weights in for generation or scoring on ``device``.

    A ``torch.dtype`` is accepted too (it is its own choice).
    """
    chosen, why = choose_precision(precision, purpose="inference", device=choose_device(device))
    log.info("inference precision: %s (%s)", chosen, why)
    return torch_dtype(chosen)


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


def config_precision(model_dir) -> str | None:
    """The precision a model folder's ``config.json`` records (``dtype``, or the older ``torch_dtype``).

    ``None`` when the folder has no config.json (a hub name) or it records no dtype.
    """
    conf = Path(model_dir) / "config.json"
    if not conf.is_file():
        return None
    c = json.loads(conf.read_text())
    key = "dtype" if c.get("dtype") else "torch_dtype"
    return parse_precision(c[key], what=f"{conf}: field '{key}'") if c.get(key) else None


def save_precision(requested, model_dir) -> str | None:
    """The precision weights are saved in: ``requested`` unless it is None or ``auto``, else the one
    ``model_dir`` (the base model) records, so a bf16 base is not saved back at double the size.

    ``None`` when neither says (callers keep the weights as they are, or fall back to fp32).
    """
    if requested is not None:
        p = parse_precision(requested, what="save dtype")
        if p != "auto":
            return p
    return config_precision(model_dir)
