"""Atomic writes: a file or a folder appears whole, or not at all.

Everything sftune writes that another run reads back (a converted model, a merged model, a
prepared-data cache, a curated file, a checkpoint's completion marker) is written to a
temporary name beside its target and renamed into place with ``os.replace``, so an interrupted
write never leaves half a file that looks finished.

>>> import os, tempfile
>>> d = tempfile.mkdtemp()
>>> with atomic_file(os.path.join(d, "a.txt")) as f:
...     _ = f.write("whole")
>>> open(os.path.join(d, "a.txt")).read(), os.listdir(d)
('whole', ['a.txt'])
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_file(path: str | os.PathLike, *, encoding: str = "utf-8") -> Iterator[IO[str]]:
    """A text file open for writing that replaces ``path`` when the block ends without an error.

    On an error (or an interruption) the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike, *, prefix: str = ".tmp-") -> Iterator[Path]:
    """A temporary folder beside ``path`` to fill; it becomes ``path`` when the block ends without an error.

    A folder cannot be swapped for another in one step, so an existing ``path`` is removed just
    before the rename: readers may briefly see no folder, but never a half-written one (callers
    that race, such as DDP ranks, also hold a lock). On an error the temporary folder is removed.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "model"
    >>> with atomic_dir(target) as tmp:
    ...     _ = (tmp / "config.json").write_text("{}")
    >>> sorted(p.name for p in target.iterdir())
    ['config.json']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
