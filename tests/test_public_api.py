"""The public API: a pinned, lazily imported __all__; one exception tree."""

from __future__ import annotations

import subprocess
import sys

import sftune

API = [
    "BestOfKOptions", "ChatSession", "ConfigError", "Conversation", "CurateReport", "DataError", "DataOptions",
    "DataSource", "DecontaminateOptions", "DedupOptions", "DistillOptions", "EvaluationOptions", "ExportError",
    "ExportOptions", "FilterOptions", "FilterRules", "MergeError", "Message", "MethodError", "MethodOptions",
    "ModelLoadError", "ModelOptions", "SFTConfig", "SamplingOptions", "ServingOptions", "SftuneError",
    "TemplateError", "ToolUseOptions", "TrainingOptions", "UIOptions", "best_of_k", "chat", "create_app",
    "decontaminate", "dedup", "describe_schema", "distill", "evaluate", "export_gguf", "filter", "generate",
    "generate_file", "launch_ui", "load_config", "load_for_inference", "merge", "mix", "parse_tool_reply", "prepare",
    "save_config", "save_prepared", "serve", "train", "__version__",
]


def test_all_is_pinned_and_resolves():
    assert sftune.__all__ == API
    for name in API:
        assert getattr(sftune, name) is not None, name
    assert callable(sftune.train) and callable(sftune.evaluate)  # the functions, not the subpackages of that name


def test_import_is_light():
    code = "import sys, sftune; sftune.SFTConfig; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_every_error_is_an_sftune_error():
    for name in ("ConfigError", "DataError", "TemplateError", "ModelLoadError", "MethodError", "MergeError"):
        assert issubclass(getattr(sftune, name), sftune.SftuneError), name
    from sftune.infer.server import APIError

    assert issubclass(APIError, sftune.SftuneError)
    assert issubclass(sftune.DataError, ValueError) and issubclass(sftune.ModelLoadError, RuntimeError)  # old bases kept
