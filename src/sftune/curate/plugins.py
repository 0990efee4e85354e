"""User-supplied Python callables given on the command line as ``module:function``.

``module`` is an importable module name (the current folder is importable, like ``python -m``)
or a path to a ``.py`` file; ``function`` may be dotted (``module:Class.method``):

>>> load_callable("os.path:join")("a", "b")
'a/b'
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from ..config import ConfigError


def load_callable(spec: str, what: str = "callable"):
    """Import ``module:function`` (or ``path/to/file.py:function``) and return the function."""
    mod_name, sep, attr = spec.rpartition(":")
    if not sep or not mod_name or not attr:
        raise ConfigError(f"{what} {spec!r}: expected MODULE:FUNCTION, e.g. my_filters:keep_row or ./rules.py:keep_row")
    try:
        if mod_name.endswith(".py") or "/" in mod_name or "\\" in mod_name:
            path = Path(mod_name)
            if not path.is_file():
                raise ConfigError(f"{what} {spec!r}: file {path} does not exist")
            name = f"sftune_user_{path.stem}_{abs(hash(str(path.resolve())))}"
            s = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(s)
            sys.modules[name] = module
            s.loader.exec_module(module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))  # like `python -m`: modules in the current folder import
            module = importlib.import_module(mod_name)
    except ConfigError:
        raise
    except ModuleNotFoundError as e:
        raise ConfigError(
            f"{what} {spec!r}: cannot import module {mod_name!r} ({e}). Run from the folder that holds it, add it to "
            "PYTHONPATH, or give a file path: path/to/file.py:function"
        ) from e
    except Exception as e:  # the user's module raised while importing: show it, it is their bug to fix
        raise ConfigError(f"{what} {spec!r}: importing {mod_name!r} failed: {type(e).__name__}: {e}") from e
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
            raise ConfigError(f"{what} {spec!r}: module {mod_name!r} has no {attr!r} (callables in it: {', '.join(names) or 'none'})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{what} {spec!r}: {attr!r} is not callable")
    return obj
