"""Forms generated from a pydantic options schema: one widget per field, never a hand-kept copy.

:func:`field_specs` reads a model class generically (annotation, default, docstring); the widget
follows the type: ``Literal`` -> dropdown, ``bool`` -> checkbox, ``int``/``float`` -> number,
``list[str]`` -> one item per line, a list of sub-models -> one item per line (a plain value or a
``{key: value}`` mapping), ``dict`` -> a small YAML box, ``str | dict`` -> a name or a ``{key: value}``
mapping on one line. The values a person typed go back through the schema
itself, so the page validates exactly as the CLI and YAML do.

>>> from sftune.config import SFTConfig
>>> spec = {s.name: s for s in field_specs(SFTConfig)}
>>> spec["mask"].kind, spec["mask"].choices
('choice', ['assistant', 'last', 'completion', 'all'])
>>> spec["lora_r"].kind, spec["lora_r"].default
('int', 16)
"""

from __future__ import annotations

import functools
import shlex
import types
import typing
from dataclasses import dataclass

import yaml
from pydantic import BaseModel

from ..config import SFTConfig
from ..options import GROUPS as OPTION_GROUPS
from ..options import describe_schema

#: The option groups a run config is made of (SFTConfig = model + data + method + training), one
#: Train tab each. The fields of a tab are that group's own fields as the schema declares them
#: (:func:`sftune.options.describe_schema`), so a new option appears in the page by itself.
FORM_GROUPS = ("model", "data", "method", "training")
#: Fields the page sets itself rather than through the form: the run folder box (output_dir) and
#: the Resume button (resume), which act on the run chosen in the page.
RUN_FIELDS = ("output_dir", "resume")
SCHEMA: type[BaseModel] = SFTConfig


def schema_groups(names=FORM_GROUPS) -> dict[str, list[str]]:
    """Option group name -> its own field names, in declaration order, straight from the schema.

    >>> list(schema_groups())
    ['model', 'data', 'method', 'training']
    >>> "lora_r" in schema_groups()["method"]
    True
    """
    return {d["group"]: [f["name"] for f in d["fields"]] for d in describe_schema(*(OPTION_GROUPS[n] for n in names))}


def group_help(name: str) -> str:
    """The first line of an option group's docstring, shown at the top of its tab."""
    return (OPTION_GROUPS[name].__doc__ or "").strip().split("\n")[0]


@dataclass
class FieldSpec:
    """What a form needs to know about one schema field."""

    name: str
    kind: str  # choice | bool | int | float | text | lines | items | mapping | name_or_mapping
    default: object
    help: str
    choices: list | None = None
    optional: bool = False


def _strip_optional(ann) -> tuple[object, bool]:
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
        if len(args) < len(typing.get_args(ann)):  # str | dict | None: still optional, kind from the rest
            return typing.Union[tuple(args)], True
    return ann, False


def _kind(ann) -> tuple[str, list | None]:
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Literal:
        return "choice", list(args)
    if ann is bool:
        return "bool", None
    if ann in (int, float):
        return ann.__name__, None
    if origin is list:
        inner = args[0] if args else str
        return ("items", None) if isinstance(inner, type) and issubclass(inner, BaseModel) else ("lines", None)
    if origin is dict:
        return "mapping", None
    if origin in (typing.Union, types.UnionType) and str in args and any(typing.get_origin(a) is dict for a in args):
        return "name_or_mapping", None  # tool_format: a name (hermes) or a declared {key: value} format
    return "text", None


def field_specs(model_cls: type[BaseModel] = SCHEMA) -> list[FieldSpec]:
    """One :class:`FieldSpec` per field of ``model_cls``, in declaration order."""
    out = []
    for name, f in model_cls.model_fields.items():
        ann, optional = _strip_optional(f.annotation)
        kind, choices = _kind(ann)
        default = f.get_default(call_default_factory=True)
        out.append(FieldSpec(name, kind, default, (f.description or "").strip(), choices, optional))
    return out


def grouped(specs: list[FieldSpec], groups: dict[str, list[str]] | None = None) -> list[tuple[str, list[FieldSpec]]]:
    """``specs`` arranged by option group (default :func:`schema_groups`); a field of no group
    (other than the run's own) goes to "other", so an option is never hidden."""
    groups = schema_groups() if groups is None else groups
    by_name = {s.name: s for s in specs}
    out = [(title, [by_name[n] for n in names if n in by_name and n not in RUN_FIELDS]) for title, names in groups.items()]
    listed = {n for names in groups.values() for n in names} | set(RUN_FIELDS)
    rest = [s for s in specs if s.name not in listed]
    return [(t, ss) for t, ss in out + [("other", rest)] if ss]


# ---- values <-> widgets ----------------------------------------------------------------------
def to_widget_value(spec: FieldSpec, value):
    """A config value as its widget shows it."""
    if spec.kind in ("lines", "items"):
        items = value or []
        return "\n".join(i if isinstance(i, str) else _item_text(i) for i in items)
    if spec.kind == "mapping":
        return yaml.safe_dump(value, sort_keys=False).strip() if value else ""
    if spec.kind == "name_or_mapping" and isinstance(value, dict):
        return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6).strip()
    if spec.kind in ("text", "name_or_mapping") or (spec.kind in ("int", "float") and spec.optional):
        return "" if value is None else str(value)
    return value


def _item_text(item) -> str:
    d = item.model_dump(exclude_defaults=True) if isinstance(item, BaseModel) else dict(item)
    if list(d) == ["path"]:
        return d["path"]
    return yaml.safe_dump(d, default_flow_style=True, width=10**6).strip()


def from_widget_value(spec: FieldSpec, value):
    """A widget's value as the schema takes it (validated later by the schema itself)."""
    if spec.kind == "lines":
        items = [ln.strip() for ln in (value or "").splitlines() if ln.strip()]
        return items or (None if spec.optional else [])
    if spec.kind == "items":
        # A line is a plain value (a path) or a flow mapping such as {path: general.jsonl, share: 0.4}.
        return [yaml.safe_load(ln) if ln.strip().startswith("{") else ln.strip() for ln in (value or "").splitlines() if ln.strip()]
    if spec.kind == "mapping":
        loaded = yaml.safe_load(value) if (value or "").strip() else {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{spec.name}: expected 'key: value' lines (YAML mapping), got {value!r}")
        return loaded
    if spec.kind == "name_or_mapping":
        text = (value or "").strip()
        if not text:
            return None
        if not text.startswith("{"):
            return text
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"{spec.name}: a name such as hermes, or a mapping such as "
                             f"{{call_start: '<tool_call>', call_end: '</tool_call>'}}; could not read {value!r}: {e}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{spec.name}: expected a name or a {{key: value}} mapping, got {value!r}")
        return loaded
    if spec.kind == "text":
        return value if value not in ("", None) else (None if spec.optional else "")
    if spec.kind in ("int", "float") and isinstance(value, str):  # optional numbers are text boxes
        if not value.strip():
            return None
        try:
            return (int if spec.kind == "int" else float)(value.strip())
        except ValueError:
            raise ValueError(f"{spec.name}: expected {'an integer' if spec.kind == 'int' else 'a number'} "
                             f"or nothing (= default), got {value!r}") from None
    if spec.kind == "int" and value is not None:
        return int(value)
    if spec.kind == "float" and value is not None:
        return float(value)
    return value


def changed_values(specs: list[FieldSpec], widget_values: list) -> dict:
    """The fields whose widget differs from the schema default, as config values."""
    out = {}
    for spec, raw in zip(specs, widget_values):
        value = from_widget_value(spec, raw)
        if value != spec.default and not (value in (None, [], {}) and spec.default in (None, [], {})):
            out[spec.name] = value
    return out


def validate(values: dict) -> BaseModel:
    """The config the values describe; raises the schema's own ConfigError (naming the field) if invalid."""
    from ..config import load_config

    return load_config(None, values)


def to_yaml(values: dict) -> str:
    return yaml.safe_dump(values, sort_keys=False, allow_unicode=True) if values else "{}\n"


def to_command(values: dict, specs: list[FieldSpec]) -> str:
    """The ``sftune train`` command line with the same settings.

    A mapping is written as ``KEY=VALUE`` items (each value as YAML, so ``false`` stays a boolean)
    where the train parser reads its flag that way; one it cannot take (training_args has no flag)
    is left to the YAML file, and the command says so.
    """
    flags = _train_flags()
    kinds = {s.name: s for s in specs}
    parts, yaml_only = ["sftune", "train"], []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        spec = kinds.get(name)
        if spec is None:
            continue
        if name not in flags or (spec.kind == "mapping" and flags[name] != "KeyValues"):
            yaml_only.append(name)
        elif spec.kind == "mapping":
            parts += [flag, *(f"{k}={_flow(v)}" for k, v in value.items())] if value else []
        elif spec.kind == "name_or_mapping" and isinstance(value, dict):
            parts += [flag, _flow(value)]
        elif spec.kind == "bool":
            parts.append(flag if value else "--no-" + name.replace("_", "-"))
        elif spec.kind == "items":
            for item in value:
                d = item if isinstance(item, dict) else {"path": item}
                parts += [flag, ",".join([d["path"], *(f"{k}={v}" for k, v in d.items() if k != "path")])]
        elif spec.kind == "lines":
            parts += [flag, *value] if value else []
        elif value is not None:
            parts += [flag, str(value)]
    cmd = " ".join(shlex.quote(p) for p in parts)
    if yaml_only:
        cmd += f"   # plus {', '.join(yaml_only)}: only in the YAML file (sftune train config.yaml)"
    return cmd


#: Run-config fields ``sftune train`` has no flag for (transformers' own TrainingArguments pass
#: through only in the YAML file); test_form checks this against the CLI's TRAIN_KEYS.
YAML_ONLY = ("training_args",)


@functools.lru_cache(maxsize=1)
def _train_flags() -> dict[str, str]:
    """Field -> the class name of its ``sftune train`` argparse action, from the same flag builder the
    CLI uses (so the command shown parses back to the same config, whatever the builder does)."""
    import argparse

    from ..commands.flags import add_config_args

    p = argparse.ArgumentParser(add_help=False)
    add_config_args(p, [n for n in SCHEMA.model_fields if n not in YAML_ONLY])
    return {a.dest: type(a).__name__ for a in p._actions if a.option_strings}


def _flow(value) -> str:
    """A value as one line of YAML (``false``, ``3``, ``{a: 1}``), as the command line reads it back."""
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6).removesuffix("\n...\n").strip()


# ---- gradio widgets ----------------------------------------------------------------------------
def make_widget(spec: FieldSpec):
    """The gradio component for one field: label = name, info = its docstring, value = its default."""
    import gradio as gr

    value, kw = to_widget_value(spec, spec.default), dict(label=spec.name, info=spec.help, elem_id=f"opt-{spec.name}")
    if spec.kind == "choice":
        return gr.Dropdown(choices=spec.choices, value=value, **kw)
    if spec.kind == "bool":
        return gr.Checkbox(value=bool(value), **kw)
    if spec.kind in ("int", "float") and spec.optional:
        # gr.Number cannot be empty (it shows and returns 0), and 0 is not "unset" for these fields.
        return gr.Textbox(value=value, lines=1, placeholder="empty = not set", **kw)
    if spec.kind in ("int", "float"):
        return gr.Number(value=value, precision=0 if spec.kind == "int" else None, **kw)
    if spec.kind in ("lines", "items", "mapping"):
        return gr.Textbox(value=value, lines=2, max_lines=8, placeholder="one per line" if spec.kind != "mapping" else "key: value", **kw)
    if spec.kind == "name_or_mapping":
        return gr.Textbox(value=value, lines=1, placeholder="a name, or {key: value, ...}; empty = detect", **kw)
    return gr.Textbox(value=value, lines=1, **kw)
