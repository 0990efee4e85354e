"""Write a GGUF file tensor by tensor, atomically, never over an existing file unless asked.

``GGUFWriter.add_tensor`` keeps every encoded tensor in memory until the file is written, which
would hold a second copy of the model. Here the tensor table is declared first (name, shape,
type and byte size are all known before encoding), then each tensor is produced, encoded and
written in turn, so at most one encoded tensor is alive at a time.

The file is written as ``.<name>.tmp-*`` beside the target and renamed into place with
``os.replace``: a reader sees the old file or the complete new one, never a half-written one.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import gguf
import numpy as np

from .errors import ExportError
from .quants import encode, numpy_info, stored_nbytes


@dataclass
class PlannedTensor:
    """One tensor of the output: its GGUF name, float32 shape, stored type and how to produce it."""

    name: str
    shape: tuple[int, ...]
    qtype: gguf.GGMLQuantizationType
    produce: Callable[[], np.ndarray]  # float32 array of ``shape``, made when it is written


def check_output(path: str | os.PathLike, force: bool) -> Path:
    """The output path, refused if it exists (unless ``force``) or its folder cannot be made."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ExportError(f"--output {path} is a folder\n  fix: pass a file name, e.g. {path / 'model.gguf'}")
    if path.exists() and not force:
        raise ExportError(f"{path} already exists\n  fix: pass --force to overwrite it, or choose another --output")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_gguf(path: Path, writer: gguf.GGUFWriter, tensors: Iterable[PlannedTensor]) -> Path:
    """Write the metadata already added to ``writer`` and ``tensors`` to ``path`` (atomic)."""
    tensors = list(tensors)
    for t in tensors:
        dtype, np_shape = numpy_info(t.shape, t.qtype)
        raw = None if dtype != np.uint8 else t.qtype
        writer.add_tensor_info(t.name, np_shape, dtype, stored_nbytes(t.shape, t.qtype), raw_dtype=raw)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer.write_header_to_file(tmp)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for t in tensors:
            data = t.produce()
            if tuple(data.shape) != t.shape:
                raise ExportError(f"internal: {t.name} was planned as {t.shape} but produced {tuple(data.shape)}")
            writer.write_tensor_data(encode(data, t.qtype))
            del data
        writer.close()
        os.replace(tmp, path)
    finally:
        writer.close()
        tmp.unlink(missing_ok=True)
    return path
