"""``sftune eval``: a thin layer over :func:`sftune.evaluate.compare.evaluate` and the reports."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
Judge a fine-tuned model against its base:
  - held-out loss and perplexity on --data, counted on trained tokens only (same masks as training);
  - the same questions to both models (greedy), answers side by side, with exact match, contains,
    token F1 and ROUGE-L when the questions come with reference answers;
  - the forgetting check: perplexity on general text before and after, with the relative change.
Writes eval.json, eval.md and eval.html to --output (default: MODEL/eval for a folder, else ./eval).

  sftune eval --model runs/20261123-0900
  sftune eval --model runs/x --data heldout.jsonl --questions qa.jsonl --output runs/x/eval
"""


def register(sub) -> None:
    p = sub.add_parser(
        "eval", help="before/after report: held-out loss, answers side by side, scores, forgetting",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, metavar="RUN_DIR", help="fine-tuned run folder, model folder, adapter folder or 'default'")
    p.add_argument("--base", metavar="MODEL", help="base model to compare against (default: the one the run recorded)")
    p.add_argument("--data", action="append", metavar="PATH[,format=F]", help="held-out data (any format; repeat for several)")
    p.add_argument("--questions", metavar="FILE", help="questions, answers optional (any data format, a .txt with one per line, "
                   "or a JSON object of lists; default: the bundled eval questions)")
    p.add_argument("--no-questions", action="store_true", help="do not generate answers")
    p.add_argument("--general-text", metavar="FILE", help="text for the forgetting check (default: the bundled replay.jsonl)")
    p.add_argument("--no-forgetting", action="store_true", help="skip the general-text perplexity check")
    p.add_argument("--forgetting-threshold", type=float, default=None, metavar="X",
                   help="warn when general-text perplexity rises by more than this fraction (default: 0.10)")
    p.add_argument("--output", metavar="DIR", help="where to write eval.json/md/html")
    p.add_argument("--max-new-tokens", type=int, default=256, metavar="N", help="answer length limit (default: 256)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="rows per forward pass (default: 8)")
    p.add_argument("--no-compare", action="store_true", help="score the fine-tuned model alone (no base model)")
    p.add_argument("--cache-dir", metavar="DIR", help="where converted models and prepared data are cached")
    p.add_argument("--no-cache", action="store_true", help="re-read and re-tokenize the data even if cached")
    p.set_defaults(func=cmd_eval)


def default_output(model: str) -> Path:
    p = Path(model)
    return p / "eval" if p.is_dir() else Path("eval")


def cmd_eval(args) -> int:
    from ..cli import _parse_source
    from ..config import ConfigError, DataSource
    from .compare import evaluate
    from .report import summary, write_reports

    if args.max_new_tokens < 1 or args.batch_size < 1:
        raise ConfigError("--max-new-tokens and --batch-size must be at least 1")
    data = [DataSource(**_parse_source(s)) for s in (args.data or [])]
    for src in data:
        if not Path(src.path).exists() and src.path.count("/") != 1:
            raise FileNotFoundError(f"--data {src.path}: no such file or folder")
    res = evaluate(
        args.model, base=args.base, data=data, questions=args.questions, ask=not args.no_questions,
        general_text=args.general_text, forgetting=not args.no_forgetting, compare=not args.no_compare,
        max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, forgetting_threshold=args.forgetting_threshold,
        cache_dir=args.cache_dir, use_cache=not args.no_cache, progress=True,
    )
    paths = write_reports(res, args.output or default_output(args.model))
    print(summary(res.to_dict(), paths))
    return 0
