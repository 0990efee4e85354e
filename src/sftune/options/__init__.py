"""One options system: typed option groups shared by Python, YAML, the CLI and (later) the web UI.

Each group is a pydantic model whose fields carry a type, choices, a default and a docstring
(the help). A run config is flat, the groups combined by inheritance, so one YAML mapping and
one flag per key keep working:

==================  ==========================================================
group               used by
==================  ==========================================================
ModelOptions        every command that loads a model
DataOptions         prepare, inspect, train, curate (with DataSource)
MethodOptions       train
TrainingOptions     train
SFTConfig           train: Model + Data + Method + Training, flat
SamplingOptions     chat, generate, serve, distill, best-of-K
EvaluationOptions   eval
ServingOptions      serve
ToolUseOptions      chat, generate, serve (tools, template variables, call format)
ExportOptions       export (GGUF)
UIOptions           ui
FilterOptions       curate filter
DedupOptions,       curate dedup, curate decontaminate
DecontaminateOptions
DistillOptions,     curate distill, curate best-of-k: SamplingOptions with their own defaults
BestOfKOptions      (not in GROUPS: a form shows the sampling group with these defaults)
==================  ==========================================================

:func:`describe_schema` lists every field of every group as plain data, for forms.

>>> [g["group"] for g in describe_schema()][:4]
['model', 'data', 'method', 'training']
"""

from __future__ import annotations

from ..errors import ConfigError
from .base import OptionGroup, describe_schema, field_help
from .curation import BestOfKOptions, DecontaminateOptions, DedupOptions, DistillOptions, FilterOptions
from .data import DataOptions, DataSource, Format, MaskPolicy
from .evaluation import EvaluationOptions
from .export import ExportOptions, UIOptions
from .method import Method, MethodOptions
from .model import ModelOptions, Precision
from .sampling import SamplingOptions
from .serving import ServingOptions
from .tool_use import ToolUseOptions
from .training import SFTConfig, TrainingOptions
from .yaml_file import load_config, save_config

#: Every option group by its name, in the order a form shows them.
GROUPS = {
    g.group_name: g
    for g in (ModelOptions, DataOptions, MethodOptions, TrainingOptions, SamplingOptions, EvaluationOptions,
              ServingOptions, ToolUseOptions, ExportOptions, UIOptions, FilterOptions, DedupOptions,
              DecontaminateOptions)
}

__all__ = [
    "GROUPS", "BestOfKOptions", "ConfigError", "DataOptions", "DataSource", "DecontaminateOptions", "DedupOptions", "DistillOptions", "EvaluationOptions", "ExportOptions", "UIOptions",
    "FilterOptions", "Format", "MaskPolicy", "Method", "MethodOptions", "ModelOptions", "OptionGroup", "Precision", "SFTConfig",
    "SamplingOptions", "ServingOptions", "ToolUseOptions", "TrainingOptions", "describe_schema", "field_help", "load_config", "save_config",
]
