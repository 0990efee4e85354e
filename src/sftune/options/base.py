"""The base of every option group, and the two things built on the schema: errors and a description.

An option group is a pydantic model whose fields each carry a type (choices are ``Literal``),
a default and a docstring (``use_attribute_docstrings``). That one declaration is read by
YAML loading, by the CLI (a flag per field, help = docstring) and by :func:`describe_schema`,
which a UI builds its forms from.

Constructing a group with a bad value raises :class:`~sftune.errors.ConfigError` naming the
field, and an unknown key gets a suggestion:

>>> from sftune.options import SamplingOptions
>>> SamplingOptions(temprature=0.5)
Traceback (most recent call last):
...
sftune.errors.ConfigError: invalid SamplingOptions:
  unknown key 'temprature'. Did you mean 'temperature'?
"""

from __future__ import annotations

import contextvars
import difflib
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import ConfigError

_DEPTH = contextvars.ContextVar("sftune_option_depth", default=0)


class OptionGroup(BaseModel):
    """A typed group of options; unknown keys and bad values raise :class:`ConfigError`."""

    # use_attribute_docstrings: the docstring under each field is its description (and --help text).
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True, populate_by_name=True)

    def __init__(self, /, **data: Any):
        # pydantic also calls __init__ for nested groups (DataSource inside SFTConfig): only the
        # outermost call turns the errors into one ConfigError, so nested locations stay whole.
        token = _DEPTH.set(_DEPTH.get() + 1)
        try:
            super().__init__(**data)
        except ValidationError as e:
            if _DEPTH.get() > 1:
                raise
            raise explain(e, type(self).__name__, type(self)) from None
        finally:
            _DEPTH.reset(token)


def suggest(key: str, known) -> str:
    """`` Did you mean 'x'?`` for the closest known name, or ``""``."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def _known_at(model: type[BaseModel], loc: tuple) -> dict:
    """The fields of the (nested) model that ``loc[:-1]`` points into."""
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        f = model.model_fields.get(str(part))
        if f is None:
            return {}
        inner = [a for a in typing.get_args(f.annotation) or (f.annotation,) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not inner:  # list[DataSource] and the like
            for a in typing.get_args(f.annotation):
                inner += [b for b in typing.get_args(a) or (a,) if isinstance(b, type) and issubclass(b, BaseModel)]
        model = inner[0] if inner else None
    return model.model_fields if model is not None else {}


def explain(err: ValidationError, origin: str, model: type[BaseModel]) -> ConfigError:
    """One :class:`ConfigError` listing every problem of ``err``; ``field`` is the first one's key."""
    lines, first = [], None
    for e in err.errors():
        loc = tuple(e["loc"])
        name = ".".join(str(p) for p in loc)
        msg = str(e["msg"]).removeprefix("Value error, ")
        # A whole-group check names its field first ("top_p must be ..."): that is the field at fault.
        first = first or name or next((w for w in msg.split()[:1] if w in model.model_fields), None)
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown key '{name}'.{suggest(str(loc[-1]), _known_at(model, loc))}")
        elif e["type"] == "value_error":  # our own validators: their message is the whole story
            lines.append(f"'{name}': {msg}" if name else msg)
        else:
            lines.append(f"'{name}': {e['msg']} (got {e.get('input')!r})")
    return ConfigError(f"invalid {origin}:\n  " + "\n  ".join(lines), where=None if origin[:1].isupper() else origin, field=first or None)


def field_help(group: type[BaseModel], name: str) -> str:
    """The docstring of a field (its ``--help`` text)."""
    return (group.model_fields[name].description or "").strip()


def _type_name(ann) -> tuple[str, list | None]:
    """(type name, choices) of an annotation, for a form: 'int', 'float', 'bool', 'str', 'list[str]', ..."""
    args = typing.get_args(ann)
    if typing.get_origin(ann) is Literal:
        return "choice", list(args)
    if args and type(None) in args:  # X | None
        rest = [a for a in args if a is not type(None)]
        name, choices = _type_name(rest[0]) if len(rest) == 1 else (" | ".join(_type_name(a)[0] for a in rest), None)
        return name, choices
    if typing.get_origin(ann) is not None:
        return str(ann).replace("typing.", ""), None
    return getattr(ann, "__name__", str(ann)), None


def describe_schema(*groups: type[BaseModel]) -> list[dict]:
    """The option groups as plain data, to build forms from (the web UI does).

    One dict per group: ``{"group", "help", "fields": [{"name", "type", "choices",
    "default", "help", "flag"}, ...]}``. Groups default to all of
    :data:`sftune.options.GROUPS`. A group's fields are its own, not the inherited ones.

    >>> from sftune.options import SamplingOptions
    >>> temp = describe_schema(SamplingOptions)[0]["fields"][0]
    >>> temp["name"], temp["type"], temp["default"], temp["flag"]
    ('temperature', 'float', 0.0, '--temperature')
    >>> describe_schema(SamplingOptions)[0]["group"]
    'sampling'
    """
    if not groups:
        from . import GROUPS

        groups = tuple(GROUPS.values())
    out = []
    for g in groups:
        own = g.__dict__.get("__annotations__", {})
        fields = []
        for name, f in g.model_fields.items():
            if name not in own:
                continue
            typ, choices = _type_name(f.annotation)
            default = f.default_factory() if f.default_factory is not None else f.default
            extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
            fields.append({"name": name, "type": typ, "choices": choices, "default": default,
                           "help": (f.description or "").strip(), "flag": extra.get("flag", "--" + name.replace("_", "-"))})
        out.append({"group": getattr(g, "group_name", g.__name__), "help": (g.__doc__ or "").strip().split("\n")[0], "fields": fields})
    return out
