"""Training speed-ups that keep the maths: padding-free batches, per-sample attention, fused LoRA linears, compiled layers.

:func:`training_speedups` wraps ``trainer.train()`` (``sftune train`` and ``bench_sft.py`` do) and
undoes everything on exit, so the generation before and after training runs the model as loaded:

* **padding-free batches** (CPU, unpacked data): a batch of samples goes through as one packed row
  (:class:`PaddingFreeCollator`), so no padding is computed; the update is the padded one's.
* **per-sample attention** for packed rows (:mod:`sftune.train.packed_attention`): causal SDPA on
  each sample instead of the row's block-diagonal mask (15% of a float32 step -> 6% on this
  project's CPU).
* **fused LoRA linears** (CPU; :mod:`sftune.train.fused_lora`): the adapter's scaling on its
  rank-``r`` activations and the base product accumulated into the adapter's output by the matrix
  product itself, instead of peft's three element-wise passes.
* **compiled decoder layers** (option ``compile``): ``torch.compile`` of each decoder layer in
  place (``nn.Module.compile``). Whole-model compilation (``TrainingArguments(torch_compile=True)``)
  wraps the model, and sftune's trainer then falls back to the model's own loss, which computes
  float32 logits for every position; compiled layers keep every module type, so the chunked
  loss, peft's adapters and saving work unchanged, and all layers share one compiled graph. The
  kernels are cached under sftune's cache dir (``<cache>/inductor``, unless
  ``TORCHINDUCTOR_CACHE_DIR`` is set). ``compile="auto"`` follows what was measured
  (benchmarks/README.md, "Speed"): see :func:`decide_compile`.

>>> decide_compile("off", precision="fp32", cuda=False)
(False, 'compile off')
>>> decide_compile("auto", precision="fp32", cuda=True)
(False, 'auto: not measured on a GPU, so left off')
>>> decide_compile("auto", precision="fp32", cuda=False)[0]
False
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field

log = logging.getLogger("sftune")


@dataclass
class SpeedReport:
    """What :func:`training_speedups` did: whether layers were compiled, why, and compile seconds."""

    compiled: bool = False
    why: str = ""
    layers: int = 0
    cache_dir: str | None = None
    compile_seconds: float = 0.0
    """Time dynamo + inductor spent compiling (from torch's own compile metrics), filled on exit."""
    details: dict = field(default_factory=dict)

    def summary(self) -> str:
        attn = "padding-free batches; " if self.details.get("padding_free") else ""
        attn += "per-sample attention for packed rows; " if self.details.get("packed_attention") else ""
        attn += f"{self.details['fused_lora']} fused LoRA linears; " if self.details.get("fused_lora") else ""
        if not self.compiled:
            return f"{attn}eager layers ({self.why})"
        return f"{attn}{self.layers} decoder layers compiled ({self.why}); {self.compile_seconds:.1f} s compiling"

    def to_dict(self) -> dict:
        return {"compiled": self.compiled, "why": self.why, "layers": self.layers, "cache_dir": self.cache_dir,
                "compile_seconds": round(self.compile_seconds, 2), **self.details}


#: Measured on the project's 2-core AMD EPYC (AVX2, float32; benchmarks/README.md, "Speed"): one
#: decoder layer's forward + backward on a 512-token packed row got 2.5% faster compiled for full
#: fine-tuning and 8% for LoRA, against 60-180 s of compilation per run (far less from the cache).
COMPILE_MEASURED = "float32 on a CPU: +2.5% per step (full) / +8% (LoRA), not worth ~1-3 min of compiling in a typical run"


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would use on a CPU (``$CXX``, else g++/clang++/c++ on the PATH), or None."""
    import shutil

    for name in (os.environ.get("CXX"), "g++", "clang++", "c++"):
        if name and shutil.which(name):
            return name
    return None


def decide_compile(setting: str, *, precision: str, cuda: bool, method: str = "full") -> tuple[bool, str]:
    """``(compile?, reason)`` for the ``compile`` option: ``on``/``off`` as asked, ``auto`` by measurement.

    ``auto`` leaves compilation off where it was measured not to pay (float32 on a CPU) and where
    it was not measured at all (GPUs, and bf16 on CPUs with AMX/AVX-512-BF16: there the issue's
    profile suggests it could pay, and ``bench_sft.py --precision bf16`` runs both to decide).
    ``on`` on a CPU without a C++ compiler is an error naming the fix.
    """
    if setting == "off":
        return False, "compile off"
    if setting == "on":
        if not cuda and cxx_compiler() is None:
            from ..errors import ConfigError

            raise ConfigError("compile: on needs a C++ compiler for inductor's CPU kernels, and none was found "
                              "(CXX, g++, clang++, c++)\n  fix: install one (apt-get install g++) or use --compile off")
        return True, "compile on"
    if cuda:
        return False, "auto: not measured on a GPU, so left off"
    if precision == "bf16":
        return False, "auto: bf16 compilation not measured yet (bench_sft.py --precision bf16 compares it), so left off"
    return False, f"auto: measured, {COMPILE_MEASURED}"


def decoder_layers(model):
    """The decoder's repeated layers (an ``nn.ModuleList``), for a plain ``*ForCausalLM`` or a peft model; else None."""
    from torch import nn

    from .loss import separate_decoder

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = getattr(separate_decoder(base), "layers", None)
    return layers if isinstance(layers, nn.ModuleList) and len(layers) else None


def _compile_seconds() -> float:
    try:
        from torch._dynamo.utils import compilation_time_metrics
    except ImportError:  # pragma: no cover - older torch
        return 0.0
    # the outermost phase of every frame dynamo compiled (includes inductor's code generation)
    return sum(sum(v) for k, v in compilation_time_metrics.items() if k == "_compile.compile_inner")


def inductor_cache_dir(cache_dir=None) -> str:
    """Where inductor caches compiled kernels: ``TORCHINDUCTOR_CACHE_DIR`` if set, else ``<sftune cache>/inductor``."""
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return os.environ["TORCHINDUCTOR_CACHE_DIR"]
    from ..model.loading import cache_root

    path = cache_root(cache_dir) / "inductor"
    path.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)  # read by inductor whenever it looks for its cache
    return str(path)


class PaddingFreeCollator:
    """A batch of samples as one packed row: concatenated, ``position_ids`` restarting per sample, no padding.

    Exactly the padded batch's computation (same tokens, positions, attention per sample and
    trained labels; the first label of a sample is never trained after the shift either way),
    minus the padding: on a CPU every padded token costs as much as a real one. Rows that are
    already packed (``seq_lengths``) go to the wrapped collator unchanged.

    >>> c = PaddingFreeCollator(inner=None, pad_token_id=0)
    >>> b = c([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8, 9], "labels": [-100, 9]}])
    >>> b["input_ids"].tolist(), b["position_ids"].tolist(), b["labels"].tolist()
    ([[5, 6, 7, 8, 9]], [[0, 1, 2, 0, 1]], [[-100, 6, 7, -100, 9]])
    """

    def __init__(self, inner, pad_token_id: int):
        from ..data.packing import PackingCollator

        self.inner, self.packing = inner, PackingCollator(pad_token_id)

    def __call__(self, rows):
        if not rows or "seq_lengths" in rows[0]:
            return self.inner(rows)
        return self.packing([[{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]])


def padding_free_blocker(model, cfg, cuda: bool) -> str | None:
    """Why sample batches cannot go padding-free here, or None when they can."""
    import inspect

    from .loss import is_prompt_learning

    if getattr(cfg, "packing", False):
        return "the rows are packed already"
    if cuda:
        return "not measured on a GPU"
    if getattr(cfg, "neftune_alpha", None):
        return "NEFTune scales its noise by the row length"
    if is_prompt_learning(model):
        return "prompt/prefix tuning prepends virtual tokens to every row"
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(getattr(base, "config", None), "_attn_implementation", None) != "sdpa":
        return "the model does not run sdpa attention"
    # The class's forward: the instance's may be the chunked-loss wrapper (train.loss.install_chunked_forward).
    if "position_ids" not in inspect.signature(type(base).forward).parameters:
        return f"{type(base).__name__}.forward takes no position_ids"
    return None


@contextlib.contextmanager
def training_speedups(model, cfg, *, precision: str, cuda: bool | None = None, packed_attention: bool | None = None,
                      fused_lora: bool | None = None, trainer=None):
    """Padding-free batches, per-sample attention and compiled decoder layers, while the block runs.

    * With ``trainer`` (an sftune ``SFTTrainer``) and unpacked data on a CPU, each batch of
      samples becomes one packed row (:class:`PaddingFreeCollator`), when
      :func:`padding_free_blocker` finds nothing against it.
    * ``packed_attention`` (default: whenever rows are packed, by the data step or padding-free,
      on a CPU) switches sdpa models to :mod:`sftune.train.packed_attention`.
    * ``fused_lora`` (default: on a CPU) fuses peft's LoRA linears (:mod:`sftune.train.fused_lora`).
    * ``cfg.compile`` decides compilation (:func:`decide_compile`).

    Yields a :class:`SpeedReport`; its ``compile_seconds`` is filled when the block ends. The
    trainer's collator, the model's attention and its eager layers are restored on exit,
    whatever happened inside.
    """
    import torch

    from .fused_lora import fused_lora_linears
    from .packed_attention import use_packed_attention

    cuda = torch.cuda.is_available() if cuda is None else cuda
    blocker = padding_free_blocker(model, cfg, cuda) if trainer is not None else "no trainer given"
    padding_free = blocker is None and packed_attention is not False
    if packed_attention is None:
        packed_attention = (bool(getattr(cfg, "packing", False)) or padding_free) and not cuda
    if fused_lora is None:  # measured on a CPU only (benchmarks/README.md, "Speed")
        fused_lora = not cuda
    old_collator = trainer.data_collator if trainer is not None else None
    if padding_free:
        pad = getattr(trainer.processing_class, "pad_token_id", None)
        trainer.data_collator = PaddingFreeCollator(old_collator, pad if pad is not None else 0)
        log.info("batches: padding-free (each batch of samples is one packed row)")
    try:
        with contextlib.ExitStack() as stack:
            switched = stack.enter_context(use_packed_attention(model)) if packed_attention else False
            # before compiling: the compiled layers trace the fused forwards
            fused = stack.enter_context(fused_lora_linears(model)) if fused_lora else 0
            report = stack.enter_context(_compiled_layers(model, cfg, precision=precision, cuda=cuda))
            report.details.update(packed_attention=switched, padding_free=padding_free, fused_lora=fused)
            yield report
    finally:
        if padding_free:
            trainer.data_collator = old_collator


@contextlib.contextmanager
def _compiled_layers(model, cfg, *, precision: str, cuda: bool):
    import torch

    on, why = decide_compile(getattr(cfg, "compile", "auto"), precision=precision, cuda=cuda,
                             method=getattr(cfg, "method", "full"))
    report = SpeedReport(compiled=False, why=why)
    layers = decoder_layers(model) if on else None
    if on and layers is None:
        report.why = f"{why}, but {type(model).__name__} has no decoder layer list to compile"
        log.warning("compile: %s", report.why)
    if not on or layers is None:
        yield report
        return
    report.cache_dir = inductor_cache_dir(getattr(cfg, "cache_dir", None))
    before = _compile_seconds()
    # One compiled graph serves every layer (parameters are graph inputs), but each layer is a
    # separate frame for dynamo's guards: allow a recompile per layer and per shape family.
    dyn = torch._dynamo.config
    old_limit = dyn.recompile_limit
    dyn.recompile_limit = max(old_limit, 4 * len(layers))
    for layer in layers:
        layer.compile()
    report.compiled, report.layers = True, len(layers)
    log.info("compile: %d decoder layers (%s); kernels cached in %s", len(layers), why, report.cache_dir)
    t = time.perf_counter()
    try:
        yield report
    finally:
        for layer in layers:
            layer._compiled_call_impl = None  # back to eager (generation after training, saving)
        dyn.recompile_limit = old_limit
        report.compile_seconds = _compile_seconds() - before
        report.details["block_seconds"] = round(time.perf_counter() - t, 2)
        log.info("compile: %.1f s spent compiling", report.compile_seconds)
