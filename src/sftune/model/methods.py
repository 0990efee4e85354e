"""Fine-tuning methods: which parameters train, and how.

``full`` trains everything; the PEFT methods wrap the model with ``peft``; ``selective`` freezes
everything but the parameters whose names match the given regexes. Each returns a model the
``Trainer`` trains as is.

LoRA's default targets are every attention and MLP projection of the architecture, not peft's
historical ``q_proj, v_proj``: adapting all linear layers is what the QLoRA paper found necessary
to match full fine-tuning, and costs little more.
"""

from __future__ import annotations

import logging
import re

from ..errors import SftuneError

log = logging.getLogger("sftune")

#: Linear layers of the decoder blocks, per model_type. Unknown architectures use peft's
#: "all-linear" (every nn.Linear except the output head).
LORA_TARGETS = {
    **{
        t: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        for t in ("llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen2_moe", "gemma", "gemma2", "gemma3_text", "olmo", "olmo2", "smollm3", "granite", "phi3")
    },
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "falcon": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"],
}
PEFT_METHODS = ("lora", "qlora", "dora", "ia3", "prompt_tuning", "prefix_tuning", "p_tuning")


class MethodError(SftuneError, ValueError):
    """A method that cannot be applied as configured, with the fix."""


def parameter_counts(model) -> tuple[int, int]:
    """(trainable, total) parameter counts; shared (tied) tensors are counted once."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = p.numel()
        if hasattr(p, "ds_numel"):  # DeepSpeed ZeRO-3 partitions parameters
            n = p.ds_numel
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def describe_parameters(model) -> str:
    """One line for the log.

    >>> import torch; describe_parameters(torch.nn.Linear(4, 2))
    'trainable parameters: 10 of 10 (100.00%)'
    """
    t, n = parameter_counts(model)
    return f"trainable parameters: {t:,} of {n:,} ({100 * t / max(n, 1):.2f}%)"


def default_lora_targets(model) -> list[str] | str:
    mt = getattr(getattr(model, "config", None), "model_type", None)
    return LORA_TARGETS.get(mt, "all-linear")


def _check_targets(model, targets) -> None:
    if targets == "all-linear" or targets is None:
        return
    names = [n for n, _ in model.named_modules()]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        leaves = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m).__name__ == "Linear"})
        raise MethodError(
            f"target_modules {missing} match no module of this model; its linear layers are named {leaves}. "
            "Pass --target-modules with some of those (or omit it for the default)."
        )


def qlora_load_kwargs(cfg) -> dict:
    """``from_pretrained`` keywords that load the base in 4-bit NF4 (bitsandbytes, CUDA only)."""
    import torch

    if not torch.cuda.is_available():
        raise MethodError(
            "qlora loads the base model in 4-bit with bitsandbytes, which needs a CUDA GPU, and none is visible. "
            "On this machine use --method lora (same adapters over a full-precision base; SmolLM2-135M needs ~2 GB)."
        )
    try:
        from transformers import BitsAndBytesConfig

        import bitsandbytes  # noqa: F401
    except ImportError:
        raise MethodError("qlora needs bitsandbytes: pip install bitsandbytes") from None
    from .precision import choose_precision, torch_dtype

    # The 4-bit weights are dequantized to this dtype for each matmul: the GPU's fast half type.
    compute = torch_dtype(choose_precision("auto", device="cuda")[0])
    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute
        )
    }


def peft_config(model, cfg):
    """The ``peft`` config object for ``cfg.method``."""
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, TaskType

    m = cfg.method
    if m in ("lora", "qlora", "dora"):
        targets = cfg.target_modules or default_lora_targets(model)
        _check_targets(model, targets)
        return LoraConfig(
            task_type=TaskType.CAUSAL_LM, r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
            target_modules=targets, use_dora=(m == "dora"), bias="none",
        )
    if m == "ia3":
        if cfg.target_modules:
            _check_targets(model, cfg.target_modules)
            ff = [t for t in cfg.target_modules if any(k in t for k in ("mlp", "down", "fc", "dense_4h"))]
            return IA3Config(task_type=TaskType.CAUSAL_LM, target_modules=cfg.target_modules, feedforward_modules=ff)
        return IA3Config(task_type=TaskType.CAUSAL_LM)  # peft's per-architecture defaults
    if m == "prompt_tuning":
        return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=cfg.num_virtual_tokens)
    if m == "prefix_tuning":
        return PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=cfg.num_virtual_tokens)
    if m == "p_tuning":
        return PromptEncoderConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=cfg.num_virtual_tokens)
    raise MethodError(f"unknown PEFT method {m!r}; choose one of {', '.join(PEFT_METHODS)}")


def select_trainable(model, patterns: list[str]) -> list[str]:
    """Freeze every parameter, then unfreeze those whose name matches one of the regexes."""
    regexes = []
    for p in patterns:
        try:
            regexes.append(re.compile(p))
        except re.error as e:
            raise MethodError(f"trainable_modules: {p!r} is not a valid regular expression ({e})") from None
    chosen = []
    for name, param in model.named_parameters():
        hit = any(r.search(name) for r in regexes)
        param.requires_grad_(hit)
        if hit:
            chosen.append(name)
    if not chosen:
        sample = [n for n, _ in model.named_parameters()][:6]
        raise MethodError(
            f"trainable_modules {patterns} match no parameter. Names look like {sample}; "
            "e.g. --trainable-modules 'layers\\.(28|29)\\.' lm_head"
        )
    unmatched = [p for p, r in zip(patterns, regexes) if not any(r.search(n) for n in chosen)]
    if unmatched:
        log.warning("trainable_modules %s matched no parameter", unmatched)
    return chosen


def apply_method(model, cfg):
    """Make ``model`` ready for training with ``cfg.method``; returns the model to train."""
    if cfg.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if cfg.method == "selective":
        if not cfg.trainable_modules:
            raise MethodError("method 'selective' needs --trainable-modules REGEX [REGEX ...], e.g. 'layers\\.(28|29)\\.' lm_head")
        chosen = select_trainable(model, cfg.trainable_modules)
        log.info("selective fine-tuning: %d parameter tensors train, the rest is frozen", len(chosen))
        return model
    if cfg.method not in PEFT_METHODS:
        raise MethodError(f"unknown method {cfg.method!r}")
    from peft import get_peft_model, prepare_model_for_kbit_training

    if cfg.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    elif cfg.gradient_checkpointing:
        # With a frozen base nothing upstream of the adapters needs grad, so checkpointed blocks
        # would see inputs without grad and drop the adapters' gradients; this makes the
        # embeddings' output require grad.
        model.enable_input_require_grads()
    return get_peft_model(model, peft_config(model, cfg))
