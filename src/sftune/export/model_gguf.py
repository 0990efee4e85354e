"""``export_gguf``: a model folder, run folder, adapter or ``default`` as one GGUF file for llama.cpp / Ollama / LM Studio.

The model is loaded with sftune's own loader (so ``default``, GGUF inputs and adapters resolve
as everywhere else), a LoRA/DoRA adapter is merged into its base in memory (peft's
``merge_and_unload``, in float32), and the file is written with the ``gguf`` package: its
writer, its tensor-name map for the architecture and its quantizers.

>>> from sftune.export import export_gguf                              # doctest: +SKIP
>>> export_gguf("runs/identity", "identity.gguf", "q8_0", ollama=True)  # doctest: +SKIP
ExportResult(path=PosixPath('identity.gguf'), quant='q8_0', ...)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import gguf

from .architectures import row_transform, spec_for, write_hparams
from .errors import ExportError
from .gguf_file import PlannedTensor, check_output, write_gguf
from .ollama import modelfile_text, ollama_create_command
from .quants import parse_quant, tensor_type
from .tokenizer_meta import end_of_turn_id, write_tokenizer

log = logging.getLogger(__name__)


@dataclass
class ExportResult:
    """What an export wrote, and the commands that use it (the CLI prints ``commands``)."""

    path: Path
    quant: str
    n_params: int = 0
    modelfile: Path | None = None
    commands: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


#: GenerationConfig field -> (GGUF writer method, Ollama PARAMETER name)
_SAMPLING = {"temperature": ("add_sampling_temp", "temperature"), "top_p": ("add_sampling_top_p", "top_p"),
             "top_k": ("add_sampling_top_k", "top_k"), "min_p": ("add_sampling_min_p", "min_p"),
             "repetition_penalty": ("add_sampling_penalty_repeat", "repeat_penalty")}


def generation_defaults(generation_config) -> dict[str, float]:
    """The sampling settings the model's generation config sets explicitly (not transformers' defaults)."""
    if generation_config is None:
        return {}
    diff = generation_config.to_diff_dict()
    if diff.get("do_sample") is False:
        return {}  # greedy by design: sampling values in the config are not in effect
    return {k: diff[k] for k in _SAMPLING if diff.get(k) is not None}


def _resolve(model: str, cache_dir):
    """(resolved path, is adapter, base path): the same resolution every sftune command uses."""
    from ..model.loading import adapter_base, is_adapter_dir, resolve_model

    path = resolve_model(str(model), cache_dir)
    adapter = is_adapter_dir(path)
    return path, adapter, (adapter_base(path, cache_dir) if adapter else path)


def _check_architecture(base: str, trust_remote_code: bool):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base, trust_remote_code=trust_remote_code)
    return config, spec_for(config)


def _load_merged(model: str, path: str, adapter: bool, cache_dir, trust_remote_code: bool):
    """The model in float32 on CPU with any adapter merged, its tokenizer, and the generation config."""
    import json

    import torch
    from transformers import GenerationConfig

    from ..infer.merge import _NOT_MERGEABLE
    from ..model.loading import load_for_inference

    if adapter:
        peft_type = str(json.loads((Path(path) / "adapter_config.json").read_text()).get("peft_type", "")).upper()
        if peft_type in _NOT_MERGEABLE:
            raise ExportError(f"{path}: a {peft_type.lower()} adapter adds virtual tokens instead of changing weights; "
                              "llama.cpp cannot run it\n  fix: train with --method lora (or full) to export")
    m, tok = load_for_inference(model, precision=torch.float32, cache_dir=cache_dir, device="cpu", trust_remote_code=trust_remote_code)
    gen = getattr(m, "generation_config", None)
    if adapter:
        m = m.merge_and_unload()  # in float32: W + scale * B @ A, rounded once when encoded
        if (Path(path) / "generation_config.json").is_file():
            gen = GenerationConfig.from_pretrained(path)  # the training run's end-of-turn EOS
    return m, tok, gen


def _plan_tensors(model, spec, quant) -> list[PlannedTensor]:
    """Every tensor of the file, named by gguf's map for the architecture; unknown tensors are refused here, before writing."""
    config = model.config
    name_map = gguf.get_tensor_name_map(spec.arch, config.num_hidden_layers)
    out_emb, in_emb = model.get_output_embeddings(), model.get_input_embeddings()
    tied = out_emb is not None and out_emb.weight is in_emb.weight
    planned = []
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp uses token_embd as the output matrix when output.weight is absent
        name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ExportError(f"tensor {hf_name} {tuple(tensor.shape)} has no GGUF name for architecture {spec.gguf_name}; "
                              f"nothing was written\n  fix: this model has layers llama.cpp's {spec.gguf_name} graph does not run")
        shape = tuple(tensor.shape)
        transform = row_transform(spec, config, name)

        def produce(t=tensor, f=transform):
            a = t.detach().float().numpy()
            return f(a) if f else a

        planned.append(PlannedTensor(name, shape, tensor_type(name, shape, quant), produce))
    return planned


def _output_paths(output, finish: str | None, force: bool) -> tuple[Path, Path | None]:
    """(file written now, file llama-quantize will write or None)."""
    final = Path(output).expanduser()
    if finish is None:
        return check_output(final, force), None
    return check_output(final.with_name(f"{final.stem}.f16.gguf"), force), final


def export_gguf(model: str | os.PathLike, output: str | os.PathLike, quant: str = "f16", *, ollama: bool = False,
                adapter_only: bool = False, force: bool = False, cache_dir=None, name: str | None = None,
                trust_remote_code: bool = False) -> ExportResult:
    """Export ``model`` (a model or run folder, an adapter folder, a hub name, a .gguf or ``default``) to ``output``.

    ``quant``: f32, f16, bf16, q8_0, q5_1, q5_0, q4_1, q4_0; a K/i-quant (q4_k_m, q6_k ...) writes
    ``<output stem>.f16.gguf`` and returns the ``llama-quantize`` command that makes ``output``.
    ``ollama``: also write a ``Modelfile`` beside the file. ``adapter_only``: write a LoRA adapter
    as a GGUF adapter for llama.cpp's ``--lora`` (see :func:`sftune.export.adapter.export_lora_adapter`).
    An existing output is only replaced with ``force``; every check runs before anything is written.
    """
    if adapter_only:
        from .adapter import export_lora_adapter

        if ollama:
            raise ExportError("--ollama with --adapter-only: an Ollama Modelfile needs the full model\n"
                              "  fix: drop --adapter-only (the adapter is merged in), or drop --ollama")
        return export_lora_adapter(model, output, quant, force=force, cache_dir=cache_dir)
    q, finish = parse_quant(quant)
    path, adapter, base = _resolve(model, cache_dir)
    config, spec = _check_architecture(base, trust_remote_code)
    out, final = _output_paths(output, finish, force)
    modelfile = out.parent / "Modelfile" if ollama else None
    if modelfile is not None and modelfile.exists() and not force:
        raise ExportError(f"{modelfile} already exists\n  fix: pass --force to overwrite it, or choose another --output folder")

    m, tok, gen = _load_merged(str(model), path, adapter, cache_dir, trust_remote_code)
    planned = _plan_tensors(m, spec, q)
    sampling = generation_defaults(gen)
    modeltext = None
    if modelfile is not None:  # derive the Ollama template before writing anything: it may refuse
        stops = sorted({tok.convert_ids_to_tokens(i) for i in {end_of_turn_id(tok, gen), tok.eos_token_id} if i is not None})
        modeltext = modelfile_text((final or out).name, tok, {_SAMPLING[k][1]: v for k, v in sampling.items()}, stops)

    writer = gguf.GGUFWriter(None, spec.gguf_name)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name or Path(path).name or spec.gguf_name)
    write_hparams(writer, m.config, spec)
    writer.add_file_type(q.file_type)
    if q.name not in ("f32", "f16"):
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    write_tokenizer(writer, tok, m.config.vocab_size, gen)
    for key, value in sampling.items():
        getattr(writer, _SAMPLING[key][0])(value)
    log.info("writing %s (%s, %d tensors)", out, q.name, len(planned))
    write_gguf(out, writer, planned)

    result = ExportResult(out, q.name, n_params=sum(p.numel() for p in m.parameters()))
    if finish:
        target = final
        result.notes.append(f"{finish.upper()} is a llama.cpp K/i-quant that the gguf package cannot write; "
                            f"wrote f16 to {out}. Finish with llama.cpp's quantizer:")
        result.commands.append(f"llama-quantize {out} {target} {finish.upper()}")
    if modeltext is not None:
        tmp = modelfile.with_name(f".{modelfile.name}.tmp")
        tmp.write_text(modeltext, encoding="utf-8")
        os.replace(tmp, modelfile)
        result.modelfile = modelfile
        if finish:
            result.notes.append(f"the Modelfile points at {final.name}: run llama-quantize before ollama create")
        result.commands.append(ollama_create_command(modelfile, (final or out).stem.lower().replace(".", "-")))
    return result
