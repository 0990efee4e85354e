"""Rows from ``datasets``: folders written by ``save_to_disk`` and hub datasets, each row with its index.

Naming problems (a folder that is not a dataset, an unknown split, a hub name that cannot be
downloaded) raise :class:`DataError` with the fix, found fast: no network is detected in
milliseconds instead of after the hub client's retries.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from .conversation import Source
from .report import DataError

#: What ``--data`` accepts, for the fixes in error messages.
SUPPORTED = ".json, .jsonl, .parquet, .csv, a folder written by datasets.save_to_disk, or a hub dataset name"
Row = "dict | DataError"


def load_from_disk(path: str, split: str):
    import datasets

    try:
        ds = datasets.load_from_disk(path)
    except FileNotFoundError as e:
        raise DataError(
            "folder is not a dataset written by datasets.save_to_disk",
            path,
            fix=f"pass a data file ({SUPPORTED}) or a folder written by Dataset.save_to_disk ({e})",
        ) from None
    return _pick_split(ds, split, path)


def _pick_split(ds, split: str, where: str):
    import datasets

    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(
                f"no split '{split}' (splits: {', '.join(ds)})",
                where,
                fix=f"pick one with --data {where},split={next(iter(ds), 'train')} or `split:` in the config",
            )
        return ds[split]
    return ds


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _no_network() -> str | None:
    """Why the hub cannot be reached, found in milliseconds (instead of ~25 s of retries), or None."""
    import socket
    from urllib.parse import urlparse

    try:
        from huggingface_hub import constants

        host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    except Exception:
        host = "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError as e:
        return f"no network: {host} cannot be resolved ({e}); with HF_HUB_OFFLINE=1 a copy in the Hugging Face cache is used"
    return None


def load_hub(name: str, split: str, streaming: bool = False):
    """A hub dataset's split; ``streaming=True`` reads it lazily (an ``IterableDataset``), downloading nothing up front."""
    import datasets

    # Offline mode still reads a copy from the local Hugging Face cache, so it is tried first.
    cause = None if _offline() else _no_network()
    try:
        if cause is not None:
            raise ConnectionError(cause)
        ds = datasets.load_dataset(name, split=split, streaming=streaming)
    except Exception as e:  # offline, no network, unknown name, gated: all end the same way for the user
        if cause is None:
            cause = (
                "HF_HUB_OFFLINE is set and it is not in the local cache"
                if _offline()
                else f"the name is wrong, the dataset is gated, or the network failed: {type(e).__name__}: {e}"
            )
        raise DataError(
            f"could not download hub dataset '{name}' ({cause})",
            name,
            fix="pass a local file instead (.json, .jsonl, .parquet, .csv, or a datasets.save_to_disk folder); "
            "if it is meant to be a local file, check the path",
        ) from None
    return _pick_split(ds, split, name)


def dataset_rows(ds, path: str) -> Iterator[tuple[Source, Row]]:
    index = 0
    for batch in ds.iter(batch_size=1024):
        names = list(batch)
        for values in zip(*(batch[c] for c in names)):
            yield Source(path, None, index), dict(zip(names, values))
            index += 1
