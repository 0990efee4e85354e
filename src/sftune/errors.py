"""One exception tree: every error sftune raises on purpose derives from :class:`SftuneError`.

Catch ``SftuneError`` to handle any of them (the CLI does, once); catch a subclass for one
kind. Each subclass also keeps the built-in base it always had (``ValueError``,
``RuntimeError``), so existing ``except ValueError`` code keeps working.

Errors carry, where they know them, ``where`` (file, file:line or request part), ``field``
(the key or column at fault) and ``fix`` (what to do), as optional attributes:

>>> e = ConfigError("lora_r must be an integer", where="run.yaml", field="lora_r", fix="write lora_r: 16")
>>> isinstance(e, SftuneError), isinstance(e, ValueError), e.field, e.fix
(True, True, 'lora_r', 'write lora_r: 16')

The concrete classes live beside the code that raises them and are re-exported here
(imported lazily, so ``import sftune.errors`` stays light):

==================  ====================================  =====================================
class               defined in                            raised for
==================  ====================================  =====================================
ConfigError         sftune.errors                         options, YAML, flags, sampling values
DataError           sftune.data.report                    a bad row, column or file
TemplateError       sftune.data.templates                 a chat template that cannot be used
ModelLoadError      sftune.model.loading                  a model or tokenizer that cannot load
MethodError         sftune.model.methods                  a fine-tuning method misconfigured
MergeError          sftune.infer.merge                    an adapter that cannot be merged
APIError            sftune.infer.server                   a request the server refuses (HTTP)
==================  ====================================  =====================================
"""

from __future__ import annotations

import importlib


class SftuneError(Exception):
    """Base of every error sftune raises on purpose; the message says what is wrong and the fix.

    ``where``, ``field`` and ``fix`` are ``None`` unless the raiser knows them. Subclasses that
    set them before calling ``super().__init__`` keep their values.
    """

    where: str | None = None
    field: str | None = None
    fix: str | None = None

    def __init__(self, *args, where: str | None = None, field: str | None = None, fix: str | None = None):
        super().__init__(*args)
        for name, value in (("where", where), ("field", field), ("fix", fix)):
            if value is not None:
                setattr(self, name, value)


class ConfigError(SftuneError, ValueError):
    """A configuration problem (YAML key, flag, option value), with the fix in the message."""


_ELSEWHERE = {
    "DataError": "sftune.data.report",
    "TemplateError": "sftune.data.templates",
    "ModelLoadError": "sftune.model.loading",
    "MethodError": "sftune.model.methods",
    "MergeError": "sftune.infer.merge",
    "APIError": "sftune.infer.server",
}

__all__ = ["SftuneError", "ConfigError", *_ELSEWHERE]


def __getattr__(name: str):
    # Lazy: these modules import this one for SftuneError, and some pull in torch.
    if name in _ELSEWHERE:
        return getattr(importlib.import_module(_ELSEWHERE[name]), name)
    raise AttributeError(f"module 'sftune.errors' has no attribute {name!r}")
