"""``sftune merge``: fold a LoRA-style adapter into its base and write a plain model folder.

The result loads with ``transformers.AutoModelForCausalLM.from_pretrained`` alone (no peft),
carries the tokenizer with the chat template used in training and the generation config (so
generation stops at the template's end-of-turn token), and is saved as safetensors.

The merge itself is peft's ``merge_and_unload``; it is done in float32 (whatever the base's
dtype) so the merged weights are ``W + B @ A * scale`` rounded once, at the end.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_dir
from ..model.loading import ModelLoadError

#: peft methods that add soft tokens or prefixes instead of changing weights: nothing to merge.
_NOT_MERGEABLE = {"PROMPT_TUNING", "PREFIX_TUNING", "P_TUNING", "MULTITASK_PROMPT_TUNING", "ADAPTION_PROMPT", "CPT"}


class MergeError(ModelLoadError):
    """The folder is not an adapter, or its method cannot be merged into the weights."""


def merge_adapter(adapter_dir, out_dir, precision=None, *, cache_dir=None) -> Path:
    """Merge the adapter in ``adapter_dir`` into its base model; write the full model to ``out_dir``.

    ``precision`` (``fp32``, ``bf16``, ``fp16``, an alias or a ``torch.dtype``) is the saved
    precision; ``None`` or ``auto``: the base model's own (float32 if it records none).
    ``out_dir`` is written through a temporary folder and renamed into place, so it is either
    complete or absent. Returns ``out_dir``.
    """
    import torch
    from peft import PeftModel

    from ..model.chat_settings import copy_chat_settings
    from ..model.loading import adapter_base, load_tokenizer
    from ..model.precision import save_precision, torch_dtype

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    conf = adapter_dir / "adapter_config.json"
    if not conf.is_file():
        hint = (" It already holds full weights (config.json): it needs no merging; load it directly."
                if (adapter_dir / "config.json").is_file() else "")
        raise MergeError(f"{adapter_dir} is not an adapter folder: it has no adapter_config.json.{hint}\n"
                         "  fix: pass the output folder of `sftune train --method lora` (or dora/ia3/qlora)")
    peft_type = str(json.loads(conf.read_text()).get("peft_type", "")).upper()
    if peft_type in _NOT_MERGEABLE:
        raise MergeError(f"{adapter_dir}: a {peft_type.lower()} adapter adds virtual tokens instead of changing weights, "
                         "so it cannot be merged into the base model\n"
                         "  fix: use the adapter folder as it is (sftune chat/generate/serve load base + adapter), "
                         "or train with --method lora to get a mergeable adapter")
    if out_dir.resolve() == adapter_dir.resolve():
        raise MergeError(f"--output {out_dir} is the adapter folder itself\n  fix: pass another folder, e.g. {adapter_dir / 'merged'}")

    base = adapter_base(adapter_dir, cache_dir)
    target = torch_dtype(save_precision(precision, base) or "fp32")
    from transformers import AutoModelForCausalLM, GenerationConfig

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    try:
        model = PeftModel.from_pretrained(model, str(adapter_dir))
        merged = model.merge_and_unload()
    except (ValueError, AttributeError, NotImplementedError) as e:
        raise MergeError(f"{adapter_dir}: peft could not merge this {peft_type.lower()} adapter: {e}") from None
    merged.to(target)
    tokenizer = load_tokenizer(str(adapter_dir), cache_dir)  # the adapter's own copy: the training template
    if (adapter_dir / "generation_config.json").is_file():
        merged.generation_config = GenerationConfig.from_pretrained(str(adapter_dir))

    with atomic_dir(out_dir, prefix=".merging-") as tmp:
        merged.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        copy_chat_settings(adapter_dir, tmp)  # template variables and tool format travel with the template
        (tmp / "sftune_merge.json").write_text(json.dumps(
            {"adapter": str(adapter_dir.resolve()), "base": str(base), "peft_type": peft_type, "dtype": str(target).replace("torch.", "")},
            indent=2) + "\n")
    return out_dir
