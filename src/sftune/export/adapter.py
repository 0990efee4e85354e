"""A LoRA adapter as a GGUF adapter file for llama.cpp's ``--lora`` (the base model stays separate).

The layout is the one llama.cpp's ``convert_lora_to_gguf.py`` writes and ``llama-adapter.cpp``
checks: ``general.type = "adapter"``, ``adapter.type = "lora"``, ``adapter.lora.alpha``, and
for each adapted matrix ``<base tensor name>.lora_a`` of shape (rank, in) and ``.lora_b`` of
shape (out, rank), in the base architecture's tensor names. llama.cpp scales every pair by
``alpha / rank``; when peft's scale differs (rsLoRA's ``alpha / sqrt(rank)``, or per-module
``rank_pattern`` / ``alpha_pattern``) the difference is folded into B, so the product is exact.

The base model's weights are not loaded: only its config (architecture, heads) and the adapter's
own safetensors, so this export is small and fast.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import gguf

from .architectures import row_transform, spec_for
from .errors import ExportError
from .gguf_file import PlannedTensor, check_output, write_gguf
from .quants import QUANTS

_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<ab>[AB])\.weight$")


def _pattern_value(patterns: dict, module: str, default):
    """peft's per-module override: a pattern matches a module name or its dotted tail."""
    for pattern, value in (patterns or {}).items():
        if re.fullmatch(rf"(.*\.)?{pattern}", module):
            return value
    return default


def _read_adapter(folder: Path) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    conf = json.loads((folder / "adapter_config.json").read_text())
    ptype = str(conf.get("peft_type", "")).upper()
    if ptype != "LORA":
        raise ExportError(f"{folder}: a {ptype.lower() or 'non-LoRA'} adapter cannot be a llama.cpp LoRA adapter\n"
                          "  fix: export the merged model instead (drop --adapter-only)")
    if conf.get("use_dora"):
        raise ExportError(f"{folder}: a DoRA adapter rescales each column of the merged weight, which llama.cpp's LoRA adapters "
                          "cannot express\n  fix: export the merged model instead (drop --adapter-only)")
    if conf.get("modules_to_save"):
        raise ExportError(f"{folder}: the adapter also trains whole modules ({', '.join(conf['modules_to_save'])}), "
                          "which a llama.cpp LoRA adapter cannot carry\n  fix: export the merged model instead (drop --adapter-only)")
    weights_file = folder / "adapter_model.safetensors"
    if not weights_file.is_file():
        raise ExportError(f"{folder} has no adapter_model.safetensors\n  fix: save the adapter with safetensors (peft's default)")
    return conf, load_file(str(weights_file))


def export_lora_adapter(model, output, quant: str = "f16", *, force: bool = False, cache_dir=None):
    """Write the LoRA adapter folder ``model`` as a GGUF adapter at ``output`` (f32, f16 or bf16)."""
    from transformers import AutoConfig

    from ..model.loading import adapter_base, is_adapter_dir, resolve_model
    from .model_gguf import ExportResult

    folder = Path(resolve_model(str(model), cache_dir))
    if not is_adapter_dir(folder):
        raise ExportError(f"--adapter-only needs an adapter folder (adapter_config.json), but {model} holds a full model\n"
                          "  fix: drop --adapter-only, or pass the output folder of `sftune train --method lora`")
    key = str(quant).lower()
    if key not in ("f32", "f16", "bf16"):
        raise ExportError(f"--adapter-only writes f32, f16 or bf16, not {quant!r} (adapters are small; llama.cpp applies them in float)\n"
                          "  fix: --quant f16")
    q = QUANTS[key]
    conf, weights = _read_adapter(folder)
    base = adapter_base(folder, cache_dir)
    config = AutoConfig.from_pretrained(base)
    spec = spec_for(config)
    out = check_output(output, force)
    name_map = gguf.get_tensor_name_map(spec.arch, config.num_hidden_layers)

    pairs: dict[str, dict] = {}
    for k, t in weights.items():
        m = _KEY.match(k)
        if m is None:
            raise ExportError(f"{folder}: adapter tensor {k} is not a LoRA A/B matrix of a linear layer "
                              "(embedding LoRA and trained biases have no llama.cpp adapter form)\n"
                              "  fix: export the merged model instead (drop --adapter-only)")
        pairs.setdefault(m["module"], {})[m["ab"]] = t
    alpha = float(conf.get("lora_alpha") or 8)
    planned = []
    for module, ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise ExportError(f"{folder}: {module} has lora_{''.join(ab)} but not both A and B")
        name = name_map.get_name(module + ".weight", try_suffixes=(".weight",))
        if name is None:
            raise ExportError(f"{folder}: adapted module {module} has no GGUF name for {spec.gguf_name}; nothing was written")
        a, b = ab["A"].float(), ab["B"].float()
        r = a.shape[0]
        m_alpha = float(_pattern_value(conf.get("alpha_pattern"), module, alpha))
        scale = m_alpha / (math.sqrt(r) if conf.get("use_rslora") else r)
        fold = scale * r / alpha  # llama.cpp applies alpha / r; fold the rest into B
        transform = row_transform(spec, config, name)  # Llama's q/k row permutation acts on B's rows

        def produce_b(b=b, fold=fold, f=transform):
            arr = (b * fold).numpy()
            return f(arr) if f else arr

        planned.append(PlannedTensor(f"{name}.lora_a", tuple(a.shape), q.qtype, lambda a=a: a.numpy()))
        planned.append(PlannedTensor(f"{name}.lora_b", tuple(b.shape), q.qtype, produce_b))
    if not planned:
        raise ExportError(f"{folder}: the adapter holds no LoRA matrices")
    writer = gguf.GGUFWriter(None, spec.gguf_name)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_name(folder.name)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    write_gguf(out, writer, planned)
    result = ExportResult(out, q.name, n_params=sum(t.numel() for t in weights.values()))
    result.notes.append(f"a LoRA adapter for the base model {base}; export the base too (sftune export --model BASE) and run:")
    result.commands.append(f"llama-cli -m BASE.gguf --lora {out}")
    return result
