"""Flags generated from option groups: one flag per field, its docstring as help, its type and choices.

Every flag defaults to ``None`` in argparse, so only what the user typed is passed on; the
option group fills in the defaults (the type's own, or a command's from ``defaults``) and
checks every value. A YAML file (``--config``) supplies the same keys; flags win over it.

>>> import argparse
>>> from sftune.options import SamplingOptions
>>> p = argparse.ArgumentParser()
>>> add_option_args(p, SamplingOptions, ["temperature", "top_k"], defaults={"temperature": 0.7})
>>> args = p.parse_args(["--top-k", "40"])
>>> options_from_args(args, SamplingOptions, ["temperature", "top_k"], defaults={"temperature": 0.7})
SamplingOptions(temperature=0.7, top_p=1.0, top_k=40, max_new_tokens=256, repetition_penalty=1.0, frequency_penalty=0.0, presence_penalty=0.0, logit_bias=None, seed=None, num_return_sequences=1, stop=None)
"""

from __future__ import annotations

import argparse
import typing

from ..errors import ConfigError
from ..options import DataSource, SFTConfig, load_config
from ..options.base import field_help


def _flag(group, name: str) -> str:
    extra = group.model_fields[name].json_schema_extra
    return (extra or {}).get("flag", "--" + name.replace("_", "-")) if isinstance(extra, dict) else "--" + name.replace("_", "-")


def add_option_args(parser, group, names: list[str] | None = None, *, defaults: dict | None = None,
                    required: tuple = (), helps: dict | None = None, short: dict | None = None) -> None:
    """Add one flag per field of ``group`` (all its fields unless ``names``) to ``parser``.

    ``defaults`` are a command's own defaults (shown in the help), ``required`` names flags that
    must be given, ``helps`` replaces a field's help for this command, ``short`` adds aliases
    such as ``{"k": "-k"}``. Dict-valued fields take ``KEY=VALUE ...`` (:class:`KeyValues`).
    """
    defaults, helps, short = defaults or {}, helps or {}, short or {}
    for name in names or list(group.model_fields):
        f = group.model_fields[name]
        flag = _flag(group, name)
        flags = [short[name], flag] if name in short else [flag]
        default = defaults.get(name, f.default_factory() if f.default_factory is not None else f.default)
        help_ = helps.get(name) or field_help(group, name)
        # An inverted switch (--no-questions) says what it does; "(default: True)" would only confuse.
        if name not in required and default not in (None, [], {}) and "default" not in help_ and not flag.startswith("--no-"):
            help_ += f" (default: {default})"
        ann = f.annotation
        args = typing.get_args(ann)
        kw = dict(dest=name, default=None, help=help_, required=name in required)
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        if typing.get_origin(ann) is list and args and isinstance(args[0], type) and issubclass(args[0], DataSource):
            parser.add_argument(*flags, action="append", metavar=extra.get("metavar", "PATH"), **kw)
        elif ann is bool and flag.startswith("--no-"):
            parser.add_argument(*flags, action="store_const", const=False, **kw)
        elif ann is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **kw)
        elif typing.get_origin(ann) is typing.Literal:
            parser.add_argument(*flags, choices=list(args), **kw)
        elif ann in (int, float) or (args and args[0] in (int, float) and type(None) in args):
            parser.add_argument(*flags, type=ann if ann in (int, float) else args[0], metavar="N", **kw)
        elif "list" in str(ann):
            parser.add_argument(*flags, nargs="+", metavar="X", **kw)
        elif _is_mapping(ann):  # str | dict (a name or a mapping) stays a plain flag
            parser.add_argument(*flags, nargs="+", action=KeyValues, metavar="KEY=VALUE", **kw)
        else:
            parser.add_argument(*flags, metavar=extra.get("metavar", "VALUE"), **kw)


def _is_mapping(ann) -> bool:
    """``dict[...]`` or ``dict[...] | None``: a field read from ``KEY=VALUE`` pairs.

    >>> from typing import Any
    >>> _is_mapping(dict[str, Any]), _is_mapping(dict[int, float] | None), _is_mapping(str | dict | None)
    (True, True, False)
    """
    if typing.get_origin(ann) is dict or ann is dict:
        return True
    parts = [a for a in typing.get_args(ann) if a is not type(None)]
    return bool(parts) and typing.get_origin(ann) is not None and all(typing.get_origin(a) is dict or a is dict for a in parts)


class KeyValues(argparse.Action):
    """``--template-kwargs enable_thinking=false k=v``: each value is read as YAML (false, 3, [a, b]).

    >>> p = argparse.ArgumentParser(); _ = p.add_argument("--kw", nargs="+", action=KeyValues)
    >>> p.parse_args(["--kw", "enable_thinking=false", "name=Ann", "n=3"]).kw
    {'enable_thinking': False, 'name': 'Ann', 'n': 3}
    """

    def __call__(self, parser, namespace, values, option_string=None):
        import yaml

        out = dict(getattr(namespace, self.dest, None) or {})
        for item in values:
            key, sep, raw = item.partition("=")
            if not sep or not key:
                parser.error(f"{option_string}: expected KEY=VALUE, got {item!r} (e.g. {option_string} enable_thinking=false)")
            try:
                out[key] = yaml.safe_load(raw) if raw else ""
            except yaml.YAMLError:
                out[key] = raw
        setattr(namespace, self.dest, out)


def given(args: argparse.Namespace, names) -> dict:
    """The flags among ``names`` the user typed (argparse leaves the others at ``None``)."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def options_from_args(args: argparse.Namespace, group, names: list[str] | None = None, *, defaults: dict | None = None):
    """``group`` built from a command's defaults and the flags given (which the group validates)."""
    return group(**{**(defaults or {}), **given(args, names or list(group.model_fields))})


def parse_source(spec: str) -> dict:
    """``--data PATH[,share=0.15][,weight=2][,format=text][,split=train]`` -> a DataSource dict."""
    return DataSource.spec(spec)


def add_config_args(parser: argparse.ArgumentParser, names: list[str]) -> None:
    """Flags for run-config keys (their defaults stay ``None`` so unset flags don't override the YAML file)."""
    add_option_args(parser, SFTConfig, names)


def config_from_args(args: argparse.Namespace, names: list[str], config_path: str | None = None) -> SFTConfig:
    """The run config: the YAML file (optional) with the flags given on top."""
    overrides = given(args, names)
    for key in ("data", "eval_data"):
        if key in overrides:
            overrides[key] = [parse_source(s) for s in overrides[key]]
    return load_config(config_path, overrides)


__all__ = ["ConfigError", "KeyValues", "add_config_args", "add_option_args", "config_from_args", "given", "options_from_args", "parse_source"]
