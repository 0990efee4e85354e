"""sftune: supervised fine-tuning of causal language models, correct by construction.

The public API, imported lazily (``import sftune`` loads no torch; each name is imported on
first use)::

    import sftune
    cfg = sftune.load_config("run.yaml", {"learning_rate": 1e-4})    # or sftune.SFTConfig(...)
    result = sftune.train(cfg)
    model, tok = sftune.load_for_inference(str(result.output_dir))
    answers = sftune.generate(model, tok, [[{"role": "user", "content": "Hi"}]], max_new_tokens=64)

Every error sftune raises derives from :class:`SftuneError`.

>>> import sftune
>>> sftune.SFTConfig(method="dora").method
'dora'
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

# public name -> (module, attribute in it)
_EXPORTS = {
    # data and training
    "prepare": ("sftune.data.prepare", "prepare"),
    "save_prepared": ("sftune.data.prepare", "save_prepared"),
    "train": ("sftune.train.run", "train"),
    # using a model
    "load_for_inference": ("sftune.model.loading", "load_for_inference"),
    "chat": ("sftune.infer.chat", "run_chat"),
    "ChatSession": ("sftune.infer.chat", "ChatSession"),
    "generate": ("sftune.infer.generate", "generate_texts"),
    "generate_file": ("sftune.infer.generate", "generate_file"),
    "evaluate": ("sftune.evaluate.compare", "evaluate"),
    "merge": ("sftune.infer.merge", "merge_adapter"),
    "serve": ("sftune.infer.server", "serve"),
    "create_app": ("sftune.infer.server", "create_app"),
    # curation steps
    "filter": ("sftune.curate.filters", "filter_conversations"),
    "dedup": ("sftune.curate.dedup", "dedup_conversations"),
    "decontaminate": ("sftune.curate.decontaminate", "decontaminate"),
    "distill": ("sftune.curate.distill", "distill"),
    "best_of_k": ("sftune.curate.best_of_k", "best_of_k"),
    "mix": ("sftune.curate.mix", "mix_conversations"),
    "FilterRules": ("sftune.curate.filters", "FilterRules"),
    "DistillOptions": ("sftune.curate.distill", "DistillOptions"),
    "BestOfKOptions": ("sftune.curate.best_of_k", "BestOfKOptions"),
    "CurateReport": ("sftune.curate.io", "CurateReport"),
    # options
    "SFTConfig": ("sftune.options", "SFTConfig"),
    "DataSource": ("sftune.options", "DataSource"),
    "ModelOptions": ("sftune.options", "ModelOptions"),
    "DataOptions": ("sftune.options", "DataOptions"),
    "MethodOptions": ("sftune.options", "MethodOptions"),
    "TrainingOptions": ("sftune.options", "TrainingOptions"),
    "SamplingOptions": ("sftune.options", "SamplingOptions"),
    "EvaluationOptions": ("sftune.options", "EvaluationOptions"),
    "ServingOptions": ("sftune.options", "ServingOptions"),
    "DedupOptions": ("sftune.options", "DedupOptions"),
    "DecontaminateOptions": ("sftune.options", "DecontaminateOptions"),
    "load_config": ("sftune.options", "load_config"),
    "save_config": ("sftune.options", "save_config"),
    "describe_schema": ("sftune.options", "describe_schema"),
    # data types
    "Conversation": ("sftune.data.conversation", "Conversation"),
    "Message": ("sftune.data.conversation", "Message"),
    # errors
    "SftuneError": ("sftune.errors", "SftuneError"),
    "ConfigError": ("sftune.errors", "ConfigError"),
    "DataError": ("sftune.data.report", "DataError"),
    "TemplateError": ("sftune.data.templates", "TemplateError"),
    "ModelLoadError": ("sftune.model.loading", "ModelLoadError"),
    "MethodError": ("sftune.model.methods", "MethodError"),
    "MergeError": ("sftune.infer.merge", "MergeError"),
    "ExportError": ("sftune.export.errors", "ExportError"),
    # tool calling, export, the web UI
    "ToolUseOptions": ("sftune.options", "ToolUseOptions"),
    "FilterOptions": ("sftune.options", "FilterOptions"),
    "ExportOptions": ("sftune.options", "ExportOptions"),
    "UIOptions": ("sftune.options", "UIOptions"),
    "parse_tool_reply": ("sftune.infer.toolcalls", "parse_output"),
    "export_gguf": ("sftune.export", "export_gguf"),
    "launch_ui": ("sftune.ui", "launch"),
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if f"sftune.{name}" in _CALLABLE:
        return _callable_package(f"sftune.{name}")  # importing it also binds it here
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'sftune' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


class _CallablePackage(types.ModuleType):
    """A subpackage that is also a function of the API: ``sftune.train(cfg)`` runs
    :func:`sftune.train.run.train` and ``sftune.evaluate(...)`` :func:`sftune.evaluate.compare.evaluate`,
    while ``import sftune.train.trainer as T`` and ``from sftune.evaluate import heldout`` keep
    working (the name is the subpackage; calling it calls the function, ``__wrapped__`` gives its
    signature to ``inspect`` and ``help``).
    """

    def __call__(self, *args, **kwargs):
        return self.__wrapped__(*args, **kwargs)

    def __getattr__(self, name):
        if name == "__wrapped__":
            module, attr = _CALLABLE[self.__name__]
            fn = getattr(importlib.import_module(module), attr)
            object.__setattr__(self, "__wrapped__", fn)
            return fn
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


#: subpackage -> the API function calling it runs
_CALLABLE = {"sftune.train": ("sftune.train.run", "train"), "sftune.evaluate": ("sftune.evaluate.compare", "evaluate")}


def _callable_package(name: str):
    module = importlib.import_module(name)
    if not isinstance(module, _CallablePackage):
        module.__class__ = _CallablePackage
    return module


# Both subpackages' __init__ are empty (no torch): convert them now, so ``sftune.train`` is callable
# whichever way it was reached first (``import sftune.train.run`` binds the subpackage here too).
for _name in _CALLABLE:
    _callable_package(_name)
