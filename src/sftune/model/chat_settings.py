"""What inference must know about how a model was trained to chat, saved beside its tokenizer.

The chat template itself travels inside the tokenizer files. Two more facts do not: the template
variables training rendered with (``template_kwargs``, e.g. ``enable_thinking: false``) and how
the template writes tool calls and reasoning (``tool_format``). ``sftune train`` writes both to
``sftune_chat.json`` next to the weights; ``merge`` carries the file along, and
``chat``, ``generate`` and ``serve`` read it, so inference renders exactly what training saw and
reads calls back in the format the model learned.

>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> path = save_chat_settings(d, template_kwargs={"enable_thinking": False}, tool_format="hermes")
>>> read_chat_settings(d)
{'template_kwargs': {'enable_thinking': False}, 'tool_format': 'hermes'}
>>> read_chat_settings("default")
{'template_kwargs': {}, 'tool_format': None}
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

FILE = "sftune_chat.json"


def save_chat_settings(folder, *, template_kwargs: dict | None = None, tool_format=None) -> Path:
    path = Path(folder) / FILE
    path.write_text(json.dumps({"template_kwargs": dict(template_kwargs or {}), "tool_format": tool_format},
                               indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_chat_settings(model) -> dict:
    """The saved settings of a model folder; defaults for anything else (a hub name, ``default``)."""
    settings = {"template_kwargs": {}, "tool_format": None}
    path = Path(str(model)) / FILE
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        settings["template_kwargs"] = dict(saved.get("template_kwargs") or {})
        settings["tool_format"] = saved.get("tool_format")
    return settings


def copy_chat_settings(src, dst) -> None:
    """Carry the settings file from ``src`` to ``dst`` when ``src`` has one (merge, export)."""
    if (Path(src) / FILE).is_file():
        shutil.copyfile(Path(src) / FILE, Path(dst) / FILE)
