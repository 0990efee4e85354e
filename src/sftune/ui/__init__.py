"""A local web app (``sftune ui``) over the library: Data, Train, Chat, Evaluate and Export pages.

Needs the optional ``gradio`` dependency: ``pip install 'sftune[ui]'``. Nothing here imports
gradio at import time; :func:`sftune.ui.app.launch` does.
"""

from __future__ import annotations

__all__ = ["launch", "build_app"]


def launch(*args, **kwargs):
    from .app import launch as _launch

    return _launch(*args, **kwargs)


def build_app(*args, **kwargs):
    from .app import build_app as _build

    return _build(*args, **kwargs)
