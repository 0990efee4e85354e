"""Export to GGUF for llama.cpp, Ollama and LM Studio: ``export_gguf`` (full model) and LoRA adapters.

Modules, in the order an export runs: ``architectures`` (which HF models map to which llama.cpp
graph, hyperparameters, rope permutation), ``quants`` (types and per-tensor policy),
``tokenizer_meta`` (vocabulary, merges, special tokens, pre-tokenizer, chat template),
``gguf_file`` (streaming atomic writer), ``ollama`` (Modelfile), ``adapter`` (LoRA adapter files),
``model_gguf`` (``export_gguf``, which ties them together), ``after_training``
(``sftune train --export gguf[:QUANT]``).
"""

from .after_training import export_run, parse_export_spec
from .errors import ExportError
from .model_gguf import ExportResult, export_gguf
from .quants import LLAMA_QUANTIZE_ONLY, QUANTS

__all__ = ["ExportError", "ExportResult", "export_gguf", "export_run", "parse_export_spec", "QUANTS", "LLAMA_QUANTIZE_ONLY"]
