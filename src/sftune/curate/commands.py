"""``sftune curate SUBCOMMAND``: the command-line layer over the curation library.

Every subcommand reads ``--data`` (any supported format, repeatable), writes ``--output`` as
canonical JSONL, never modifies an input, and prints and saves a report next to the output
(``OUTPUT.report.json``). Each handler calls one library function that a notebook user can call
too (``filter_conversations``, ``dedup_conversations``, ``decontaminate``, ``distill``,
``best_of_k``, ``mix_conversations``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

READ_KEYS = ["data", "format", "strict", "system_prompt"]
MODEL_KEYS = ["model", "cache_dir", "trust_remote_code"]
#: How training renders a conversation: what token counts must render with too.
TEMPLATE_KEYS = ["template", "template_kwargs", "reasoning"]

EPILOG = """examples:
  sftune curate filter --data raw.jsonl --output clean.jsonl --truncated --repetition 0.3 --max-tokens 2048
  sftune curate dedup --data clean.jsonl --output dedup.jsonl --threshold 0.8
  sftune curate decontaminate --data dedup.jsonl --eval test.jsonl --output decon.jsonl
  sftune curate distill --data prompts.jsonl --model default --output distilled.jsonl
  sftune curate best-of-k --data prompts.jsonl -k 4 --reward rewards.py:score --output best.jsonl
  sftune curate mix --data a.jsonl,share=0.8 --data b.jsonl,share=0.2 --output mix.jsonl"""


# ---- shared plumbing ------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser, keys: list[str]) -> None:
    from ..commands.flags import add_config_args

    p.add_argument("--config", metavar="FILE.yaml", help="YAML file with the same keys as the flags (data, format, model, ...)")
    add_config_args(p, keys)
    p.add_argument("--output", required=True, metavar="OUTPUT.jsonl", help="where to write the curated rows (never an input file)")


def _setup(args, keys: list[str], name: str, extra_inputs: list[str] = (), require_answer: bool = False, read: bool = True):
    """Config, checked output path, report and the conversations read from --data (``None`` when not ``read``)."""
    from ..commands.flags import config_from_args
    from ..errors import ConfigError
    from ..data.report import DataReport
    from .io import CurateReport, check_output, read_sources

    cfg = config_from_args(args, keys, args.config)
    if not cfg.data:
        raise ConfigError(f"sftune curate {name}: give the input with --data FILE (repeat it for several files)")
    out = check_output(args.output, [s.path for s in cfg.data] + list(extra_inputs))
    # --strict is about unreadable input rows; a row a curation rule removes is the point, never an error.
    report = CurateReport(command=name)
    reading = DataReport(strict=cfg.strict)
    convs = None
    if read:
        convs = read_sources(cfg.data, reading, require_answer=require_answer, default_format=cfg.format, system_prompt=cfg.system_prompt)
    return cfg, out, report, reading, convs


def _finish(report, reading, out: Path, kept=None) -> int:
    """Write the rows (unless already written), merge the reading counts, print and save the report."""
    from .io import save_report, write_conversations

    if kept is not None:
        write_conversations(kept, out)
    # Rows the reader could not use were never handed to the step: count them as read and dropped.
    report.rows_in += reading.n_dropped
    for reason, n in reading.dropped.items():
        report.dropped[reason] += n
        report.examples[reason].extend(reading.examples.get(reason, [])[: 5 - len(report.examples[reason])])
    report.notes.extend(reading.notes)
    path = save_report(report, out)
    print(report.summary())
    print(f"wrote {report.kept} rows -> {out}\nreport: {path}")
    return 0


# ---- handlers -------------------------------------------------------------------------------
def cmd_filter(args) -> int:
    from ..commands.flags import options_from_args
    from ..options.curation import FilterOptions
    from .filters import filter_conversations

    rules = options_from_args(args, FilterOptions)
    cfg, out, report, reading, convs = _setup(args, READ_KEYS + MODEL_KEYS + TEMPLATE_KEYS, "filter")
    tok = None
    if rules.needs_tokenizer:
        from ..model.loading import load_tokenizer

        tok = load_tokenizer(cfg.model, cfg.cache_dir, cfg.trust_remote_code)
        report.details["tokenizer"] = cfg.model
    kept = filter_conversations(
        convs, rules, report, tokenizer=tok, template=cfg.template, template_kwargs=cfg.template_kwargs, reasoning=cfg.reasoning,
    )
    return _finish(report, reading, out, kept)


def cmd_dedup(args) -> int:
    from ..commands.flags import options_from_args
    from ..options import DedupOptions
    from .dedup import dedup_conversations

    opts = options_from_args(args, DedupOptions)
    _, out, report, reading, convs = _setup(args, READ_KEYS, "dedup")
    kept = dedup_conversations(convs, opts, report)
    return _finish(report, reading, out, kept)


def cmd_decontaminate(args) -> int:
    from ..commands.flags import options_from_args
    from ..data.report import DataReport
    from ..options import DataSource, DecontaminateOptions
    from .decontaminate import decontaminate
    from .io import read_sources

    opts = options_from_args(args, DecontaminateOptions)
    evals = [DataSource.parse(s) for s in args.eval]
    cfg, out, report, reading, convs = _setup(args, READ_KEYS, "decontaminate", [s.path for s in evals])
    eval_report = DataReport()
    eval_convs = read_sources(evals, eval_report, require_answer=False, default_format=cfg.format)
    report.details["eval_read"] = eval_report.to_dict()
    kept = decontaminate(convs, eval_convs, report, opts)
    return _finish(report, reading, out, kept)


def _load_model(cfg):
    from ..model.loading import load_for_inference

    return load_for_inference(cfg.model, cache_dir=cfg.cache_dir, trust_remote_code=cfg.trust_remote_code)


def _generating_flags(group) -> list[str]:
    """The flags of distill and best-of-k: every option but the ones the step refuses (stop, and
    for distill more than one answer per prompt)."""
    refused = {"stop"} | ({"num_return_sequences"} if group.group_name == "distill" else set())
    return [n for n in group.model_fields if n not in refused]


def cmd_distill(args) -> int:
    from ..commands.flags import options_from_args
    from ..infer.commands import tool_use_settings
    from ..options.curation import DistillOptions
    from .distill import distill

    opts = options_from_args(args, DistillOptions, _generating_flags(DistillOptions))
    cfg, out, report, reading, convs = _setup(args, READ_KEYS + MODEL_KEYS, "distill", require_answer=False)
    tool_use = tool_use_settings(args, cfg.model)  # tools for rows without their own, template variables, tool format
    model, tok = _load_model(cfg)
    distill(convs, model, tok, out, report, opts, teacher=cfg.model, progress=not args.no_progress, tool_use=tool_use)
    return _finish(report, reading, out)


def cmd_best_of_k(args) -> int:
    from ..commands.flags import options_from_args
    from ..errors import ConfigError
    from ..infer.commands import tool_use_settings
    from ..options.curation import BestOfKOptions
    from .best_of_k import RewardModel, best_of_k, callable_scorer
    from .plugins import load_callable

    if bool(args.reward) == bool(args.reward_model):
        raise ConfigError("best-of-k: give exactly one of --reward MODULE:FUNCTION or --reward-model PATH")
    opts = options_from_args(args, BestOfKOptions, _generating_flags(BestOfKOptions))
    if args.reward:
        scorer, reward = callable_scorer(load_callable(args.reward, "--reward"), args.reward), args.reward
    cfg, out, report, reading, convs = _setup(args, READ_KEYS + MODEL_KEYS, "best-of-k", require_answer=False)
    if args.reward_model:
        scorer = RewardModel(args.reward_model, label=args.reward_label, trust_remote_code=cfg.trust_remote_code)
        reward = args.reward_model
    tool_use = tool_use_settings(args, cfg.model)  # tools for rows without their own, template variables, tool format
    model, tok = _load_model(cfg)
    best_of_k(convs, model, tok, scorer, out, report, opts, policy=cfg.model, reward=reward, progress=not args.no_progress,
              tool_use=tool_use)
    return _finish(report, reading, out)


def cmd_mix(args) -> int:
    from .io import read_sources
    from .mix import mix_conversations

    cfg, out, report, reading, _ = _setup(args, READ_KEYS + ["seed"], "mix", read=False)
    # One list per source: the shares apply to each file's usable rows, as in training.
    per_source = [read_sources([src], reading, default_format=cfg.format, system_prompt=cfg.system_prompt, require_answer=False) for src in cfg.data]
    kept = mix_conversations(
        per_source, [s.weight for s in cfg.data], [s.share for s in cfg.data], seed=cfg.seed, report=report,
        names=[s.path for s in cfg.data],
    )
    return _finish(report, reading, out, kept)


# ---- parsers --------------------------------------------------------------------------------
def register(sub) -> None:
    """Add ``sftune curate`` and its subcommands to the CLI's subparsers."""
    p = sub.add_parser(
        "curate", help="filter, deduplicate, decontaminate, distil, best-of-K, mix datasets",
        description="Make a training set better before training on it. Every subcommand reads any supported "
        "format, writes canonical JSONL, never modifies its input, and saves OUTPUT.report.json with rows in, "
        "rows out and rows removed per reason (with examples).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cs = p.add_subparsers(dest="curate_command", metavar="SUBCOMMAND", required=True)

    from ..commands.flags import add_option_args
    from ..options import DecontaminateOptions, DedupOptions, ToolUseOptions
    from ..options.curation import BestOfKOptions, DistillOptions, FilterOptions

    s = cs.add_parser("filter", help="drop empty, parroted, repetitive, wrong-language, truncated, too long/short rows",
                      description="Rules combine; a row is counted under the first rule it fails (in this order: "
                      "empty_answer, repeats_prompt, repetition, lang, truncated, token bounds, predicate).")
    _common(s, READ_KEYS + MODEL_KEYS + TEMPLATE_KEYS)
    add_option_args(s.add_argument_group("rules"), FilterOptions)
    s.set_defaults(func=cmd_filter)

    s = cs.add_parser("dedup", help="remove exact and near duplicates (MinHash/LSH), keeping the first occurrence")
    _common(s, READ_KEYS)
    add_option_args(s.add_argument_group("dedup"), DedupOptions)
    s.set_defaults(func=cmd_dedup)

    s = cs.add_parser("decontaminate", help="remove training rows sharing long n-grams with an evaluation set")
    _common(s, READ_KEYS)
    s.add_argument("--eval", action="append", required=True, metavar="PATH[,format=F]", help="evaluation set (any input format; repeatable)")
    add_option_args(s.add_argument_group("decontaminate"), DecontaminateOptions)
    s.set_defaults(func=cmd_decontaminate)

    for name, helptext in (("distill", "a teacher model writes the answers (resumable)"),
                           ("best-of-k", "K sampled answers per prompt, keep the best by a reward (resumable)")):
        s = cs.add_parser(name, help=helptext)
        _common(s, READ_KEYS + MODEL_KEYS)
        s.add_argument("--no-progress", action="store_true", help="no progress bar")
        add_option_args(s.add_argument_group("tools and template (rows' own tools win over --tools)"), ToolUseOptions)
        if name == "distill":
            add_option_args(s.add_argument_group("distill"), DistillOptions, _generating_flags(DistillOptions))
            s.set_defaults(func=cmd_distill)
        else:
            add_option_args(s.add_argument_group("best-of-k"), BestOfKOptions, _generating_flags(BestOfKOptions),
                            short={"num_return_sequences": "-k"})
            s.add_argument("--reward", metavar="MODULE:FUNCTION", help="reward callable fn(prompt_messages, answer) -> float")
            s.add_argument("--reward-model", metavar="PATH", help="sequence-classification reward model folder (or hub name)")
            s.add_argument("--reward-label", type=int, metavar="I", help="logit used for a multi-label reward model (default: the last label)")
            s.set_defaults(func=cmd_best_of_k)

    s = cs.add_parser(
        "mix", help="mix several inputs into one file with target shares or weights (the mixing training uses)",
        description="Each --data takes ,share=S (that fraction of the output; over- or under-sampled to reach it) or "
        ",weight=W (W x its rows). Sources without either keep their natural size. The mixing and the seed are "
        "those of `sftune train` with the same --data flags, so the file holds the mixture training would see.",
    )
    _common(s, READ_KEYS + ["seed"])
    s.set_defaults(func=cmd_mix)
