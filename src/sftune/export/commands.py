"""``sftune export``: the command-line layer over :func:`sftune.export.export_gguf`."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Write a model as GGUF for llama.cpp, Ollama and LM Studio. A LoRA/DoRA run is merged into its
base first, in memory; the tokenizer, chat template and generation defaults go into the file.

  sftune export --model runs/mine --output mine.gguf --quant q8_0
  sftune export --model runs/mine --output mine.gguf --ollama        # + Modelfile; then: ollama create mine -f Modelfile
  sftune export --model runs/mine --output mine-lora.gguf --adapter-only   # llama-cli -m base.gguf --lora mine-lora.gguf
"""


def register(sub) -> None:
    from ..commands.flags import add_option_args
    from ..options import ExportOptions, ModelOptions

    p = sub.add_parser("export", help="write GGUF for llama.cpp / Ollama / LM Studio (merging a LoRA first)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_option_args(p, ModelOptions, ["model", "cache_dir", "trust_remote_code"], required=("model",))
    add_option_args(p, ExportOptions, required=("output",))
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from ..commands.flags import options_from_args
    from ..options import ExportOptions
    from . import export_gguf

    o = options_from_args(args, ExportOptions)
    res = export_gguf(args.model, o.output, o.quant, ollama=o.ollama, adapter_only=o.adapter_only, force=o.force,
                      cache_dir=args.cache_dir, name=o.name, trust_remote_code=bool(args.trust_remote_code))
    print(f"wrote {res.path} ({res.quant}, {res.n_params:,} parameters)")
    for line in [*res.notes, *res.commands]:
        print(f"  {line}")
    return 0
