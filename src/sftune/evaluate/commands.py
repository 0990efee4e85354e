"""``sftune eval``: a thin layer over :func:`sftune.evaluate.compare.evaluate` and the reports.

Its flags are generated from :class:`~sftune.options.EvaluationOptions` (plus ``--model``/``--cache-dir``).
"""

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
    from ..commands.flags import add_option_args
    from ..options import EvaluationOptions, ModelOptions

    p = sub.add_parser(
        "eval", help="before/after report: held-out loss, answers side by side, scores, forgetting",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_option_args(p, ModelOptions, ["model"], required=("model",),
                    helps={"model": "fine-tuned run folder, model folder, adapter folder or 'default'"})
    add_option_args(p, EvaluationOptions)
    add_option_args(p, ModelOptions, ["cache_dir"])
    p.add_argument("--no-cache", action="store_true", help="re-read and re-tokenize the data even if cached")
    p.set_defaults(func=cmd_eval)


def default_output(model: str) -> Path:
    p = Path(model)
    return p / "eval" if p.is_dir() else Path("eval")


def cmd_eval(args) -> int:
    from ..commands.flags import options_from_args
    from ..options import EvaluationOptions
    from .compare import evaluate
    from .report import summary, write_reports

    o = options_from_args(args, EvaluationOptions)
    for src in o.data:
        if not Path(src.path).exists() and src.path.count("/") != 1:
            raise FileNotFoundError(f"--data {src.path}: no such file or folder")
    res = evaluate(
        args.model, base=o.base, data=o.data, questions=o.questions, ask=o.ask,
        general_text=o.general_text, forgetting=o.forgetting, compare=o.compare,
        max_new_tokens=o.max_new_tokens, batch_size=o.batch_size, forgetting_threshold=o.forgetting_threshold,
        cache_dir=args.cache_dir, use_cache=not args.no_cache, progress=True,
    )
    paths = write_reports(res, o.output or default_output(args.model))
    print(summary(res.to_dict(), paths))
    return 0
