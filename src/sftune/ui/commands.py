"""``sftune ui``: the command-line layer over :func:`sftune.ui.app.launch`."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
A local web app: prepare data (with the mask preview), train with every option of the schema
(live loss curve, progress, log; runs are separate processes that survive a page reload), chat
with a run side by side with its base, evaluate, merge and export. Served on 127.0.0.1 only,
unless --host (which then needs --auth).

  pip install 'sftune[ui]' && sftune ui --workdir ~/sft
"""


def register(sub) -> None:
    from ..commands.flags import add_option_args
    from ..options import UIOptions

    p = sub.add_parser("ui", help="local web app: data, train, chat, evaluate, export",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_option_args(p, UIOptions)
    p.set_defaults(func=cmd_ui)


def cmd_ui(args) -> int:
    from ..commands.flags import options_from_args
    from ..errors import ConfigError
    from ..options import UIOptions

    o = options_from_args(args, UIOptions)
    try:
        from .app import launch
        from .access import AccessError
    except ImportError as e:
        raise ConfigError(f"sftune ui needs gradio ({e.name} is missing)\n  fix: pip install 'sftune[ui]'") from None
    try:
        launch(host=o.host, port=o.port, workdir=o.workdir, auth=o.auth, share=o.share)
    except (AccessError, NotADirectoryError) as e:
        raise ConfigError(str(e)) from None
    return 0
