"""Who may reach the app and which files a page may touch.

The UI starts processes and reads files on the machine it runs on, so it binds to the loopback
address unless told otherwise, refuses a network bind without a password, and (with a workdir)
keeps every typed path inside that folder.

>>> check_bind("127.0.0.1", None)
>>> parse_auth("ana:s3cret")
('ana', 's3cret')
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from ..errors import SftuneError

#: The demo data shipped with sftune (read-only, always allowed).
RESOURCES = Path(__file__).resolve().parent.parent / "resources"


class AccessError(SftuneError, ValueError):
    """A refused bind or a path outside the workdir, with what to do instead."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything: treat as network


def parse_auth(auth: str | None) -> tuple[str, str] | None:
    """``'user:password'`` -> ``('user', 'password')``; None stays None."""
    if auth is None:
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:
        raise AccessError("--auth must be USER:PASSWORD, both non-empty (e.g. --auth ana:long-secret)")
    return user, password


def check_bind(host: str, auth: str | None) -> None:
    """Refuse a non-loopback address without a password: anyone on the network could start jobs."""
    if not is_loopback(host) and auth is None:
        raise AccessError(
            f"--host {host} makes the app reachable from the network, where anyone could start training "
            f"and read files; add --auth USER:PASSWORD, or drop --host to stay on 127.0.0.1"
        )
    parse_auth(auth)


class PathGuard:
    """Resolves paths typed in the page; with a workdir, refuses any that lead outside it.

    Relative paths are taken from the workdir (or the current folder without one). The bundled
    demo files are always readable: they ship with sftune and hold nothing of the user's.
    """

    def __init__(self, workdir: str | os.PathLike | None = None):
        self.workdir = Path(workdir).resolve() if workdir is not None else None
        self.base = self.workdir or Path.cwd().resolve()

    def path(self, typed: str, *, what: str = "path") -> Path:
        """An absolute path for ``typed``, checked against the workdir."""
        text = (typed or "").strip()
        if not text:
            raise AccessError(f"{what}: empty; type a file or folder name")
        p = Path(os.path.expanduser(text))
        full = (p if p.is_absolute() else self.base / p).resolve()
        if self.workdir is None or full.is_relative_to(self.workdir) or full.is_relative_to(RESOURCES.resolve()):
            return full
        raise AccessError(
            f"{what} {text!r} is outside the workdir {self.workdir}; this app was started with --workdir, "
            f"so use a path inside it (relative paths start there)"
        )

    def model_or_path(self, typed: str, *, what: str = "model") -> str:
        """A model or dataset reference: names that are not files (``default``, ``org/name`` on the hub)
        pass through; anything that looks like or exists as a path is checked as a path."""
        text = (typed or "").strip()
        if not text:
            raise AccessError(f"{what}: empty; type 'default', a hub name or a folder")
        looks_like_path = text.startswith(("/", ".", "~")) or text.endswith((".gguf", ".json", ".jsonl", ".parquet", ".csv"))
        if looks_like_path or (self.base / text).exists():
            return str(self.path(text, what=what))
        return text

    def output_dir(self, typed: str, *, what: str = "output folder") -> Path:
        p = self.path(typed, what=what)
        if p.is_relative_to(RESOURCES.resolve()):
            raise AccessError(f"{what} {typed!r}: the bundled resources are read-only; choose a folder of your own")
        return p


#: Config fields that name files or folders, and how each is read: checked against the workdir
#: before a run starts. ``ref``: a model/dataset name or a path; ``template``: a name, a Jinja
#: string or a .jinja file; ``dir``: always a path (eval_tools: the JSON file of tool schemas).
PATH_FIELDS = {"model": "ref", "data": "sources", "eval_data": "sources", "template": "template", "cache_dir": "dir",
               "eval_tools": "dir"}


def confine_config(values: dict, guard: PathGuard) -> dict:
    """``values`` with every path field made absolute and checked (raises :class:`AccessError`)."""
    out = dict(values)
    for name, kind in PATH_FIELDS.items():
        v = out.get(name)
        if v in (None, "", []):
            continue
        if kind == "ref":
            out[name] = guard.model_or_path(v, what=name)
        elif kind == "dir":
            out[name] = str(guard.path(v, what=name))
        elif kind == "template":
            is_file = v.endswith((".jinja", ".j2")) or (guard.base / v).is_file()
            out[name] = str(guard.path(v, what=name)) if is_file and "{" not in v else v
        else:
            out[name] = [_source(s, guard, name) for s in v]
    return out


def _source(src, guard: PathGuard, what: str):
    if isinstance(src, dict):
        return {**src, "path": guard.model_or_path(src.get("path", ""), what=what)}
    return guard.model_or_path(src, what=what)
