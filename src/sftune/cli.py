"""The command line: a thin layer, one function per command, each calling one library function.

Flags are generated from the option groups in :mod:`sftune.options` (by
:mod:`sftune.commands.flags`): a flag's help is the field's docstring, and ``--config FILE.yaml``
supplies the same keys (flags given on the command line win over the file). Every error sftune
raises derives from :class:`sftune.errors.SftuneError`; ``main`` prints it and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings

from .commands.flags import add_config_args, config_from_args, parse_source
from .errors import ConfigError, SftuneError
from .options import DataOptions, ModelOptions, SFTConfig

log = logging.getLogger("sftune")

# The keys of the data stage (prepare, inspect): the model's tokenizer and the data options.
DATA_KEYS = ["model", "data", "format", "template", "mask", "max_length", "packing", "strict", "system_prompt", "num_proc", "cache_dir", "trust_remote_code"]
assert set(DATA_KEYS) <= set(DataOptions.model_fields) | set(ModelOptions.model_fields)
_parse_source = parse_source  # the old private name, kept for callers outside sftune


# ---- commands -------------------------------------------------------------------------------
def _load_tokenizer(cfg: SFTConfig):
    from .model.loading import load_tokenizer

    return load_tokenizer(cfg.model, cache_dir=cfg.cache_dir, trust_remote_code=cfg.trust_remote_code)


def cmd_prepare(args) -> int:
    from .data.prepare import prepare, save_prepared

    cfg = config_from_args(args, DATA_KEYS, args.config)
    tok = _load_tokenizer(cfg)
    prep = prepare(cfg, tok, use_cache=not args.no_cache)
    out = save_prepared(prep, args.output)
    print(prep.report.summary())
    speed = " (from cache)" if prep.cached else f" ({prep.rows_per_second:.0f} conversations/s)"
    print(f"prepared {len(prep.dataset)} rows in {prep.seconds:.1f}s{speed} -> {out}")
    print(f"report: {out / 'data_report.json'}   load with: datasets.load_from_disk({str(out)!r})")
    _print_packing(cfg, prep)
    return 0


def _print_packing(cfg: SFTConfig, prep) -> None:
    """With --packing: what the packing step makes of these rows (training packs the mixture of all sources)."""
    if cfg.packing and len(prep.dataset):
        from .data.packing import format_pack_stats, pack, pack_stats

        print(format_pack_stats(pack_stats(pack(prep.dataset, cfg.max_length, seed=cfg.seed), cfg.max_length)))


def cmd_inspect(args) -> int:
    from .data.inspect import inspect_prepared
    from .data.prepare import prepare

    cfg = config_from_args(args, DATA_KEYS, args.config)
    tok = _load_tokenizer(cfg)
    prep = prepare(cfg, tok, use_cache=not args.no_cache)
    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    print(inspect_prepared(prep, tok, index=args.index, png=args.png, color=color))
    _print_packing(cfg, prep)
    return 0


COMMAND_MODULES = ["sftune.infer.commands", "sftune.evaluate.commands", "sftune.curate.commands", "sftune.export.commands", "sftune.ui.commands"]

TRAIN_KEYS = [n for n in SFTConfig.model_fields if n != "training_args"]


def cmd_train(args) -> int:
    from .train.run import train

    if args.demo:
        from .commands.flags import given
        from .train.demos import demo_config

        if args.config_file or args.config:
            raise ConfigError("--demo runs a bundled config; give either --demo or a config file, not both")
        overrides = given(args, TRAIN_KEYS)
        for key in ("data", "eval_data"):
            if key in overrides:
                overrides[key] = [parse_source(s) for s in overrides[key]]
        cfg = demo_config(args.demo, overrides)
    else:
        cfg = config_from_args(args, TRAIN_KEYS, args.config_file or args.config)
    train(cfg, progress=not args.no_progress, compare=not args.no_compare)
    return 0


def _data_parser(sub, name: str, help_: str, description: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file with the same keys as the flags")
    add_config_args(p, DATA_KEYS)
    p.add_argument("--no-cache", action="store_true", help="re-read and re-tokenize even if a cached copy exists")
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sftune",
        description="Supervised fine-tuning of causal language models: data, masks, training, evaluation, serving.",
        epilog="Start with `sftune train` (no arguments): a LoRA fine-tune of the bundled SmolLM2-135M-Instruct on CPU.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    sp = _data_parser(
        sub, "prepare", "read, template, tokenize and mask data; write a dataset folder",
        "Read data in any supported format, render it with the chat template, build labels "
        "(-100 outside the trained spans) and write a folder readable with datasets.load_from_disk, "
        "plus data_report.json with rows kept and dropped per reason.",
    )
    sp.add_argument("--output", required=True, metavar="DIR", help="folder to write the prepared dataset to")
    sp.set_defaults(func=cmd_prepare)

    sp = _data_parser(
        sub, "inspect", "show which tokens are trained, and dataset statistics",
        "Print a sample with its trained tokens highlighted, write a PNG of the mask, and print "
        "statistics: rows, token lengths, trained-token share, dropped rows by reason.",
    )
    sp.add_argument("--index", type=int, default=0, help="which prepared row to show")
    sp.add_argument("--png", default="sftune-mask.png", metavar="FILE", help="where to write the mask picture")
    sp.set_defaults(func=cmd_inspect)

    sp = sub.add_parser(
        "train", help="fine-tune a model (full, LoRA, QLoRA, other PEFT methods, selective)",
        description="Fine-tune a causal LM with transformers.Trainer. With no arguments: LoRA on the bundled "
        "SmolLM2-135M-Instruct with the bundled identity + general data, then the answers to a few questions "
        "before and after. Every flag is also a key of the YAML config (flags win).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sp.add_argument("config_file", nargs="?", metavar="CONFIG.yaml", help="YAML config with the keys below")
    sp.add_argument("--config", help=argparse.SUPPRESS)
    add_config_args(sp, TRAIN_KEYS)
    sp.add_argument("--demo", metavar="NAME", default=None,
                    help="run a bundled demo config: 'tools' teaches the default model to call a weather tool "
                         "(flags still override its keys)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    sp.add_argument("--no-compare", action="store_true", help="skip the before/after answers")
    sp.set_defaults(func=cmd_train)

    # Commands that live beside the library code they drive (chat/generate/eval/merge/serve, curate):
    # each module has ``register(subparsers)`` and stays importable without heavy imports at top level.
    for mod in COMMAND_MODULES:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            continue
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Renamed-API notices raised inside transformers/peft themselves; a user can do nothing about them.
    warnings.filterwarnings("ignore", message=r".*is deprecated and will be removed in v6", category=FutureWarning)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (SftuneError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
