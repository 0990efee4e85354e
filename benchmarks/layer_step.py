"""One decoder layer's forward + backward on a packed 512-token row: eager vs per-sample attention vs compiled.

A small, load-tolerant measurement for the speed settings of ``sftune.train.speed``: SmolLM2-135M's
layer shape (random weights), a row of four samples (150, 90, 200, 72 tokens), the variants
alternated step by step, and per variant the median process CPU time (which a busy machine
disturbs far less than wall time) next to the fastest wall times.

    OMP_NUM_THREADS=1 python benchmarks/layer_step.py                     # full fine-tuning
    OMP_NUM_THREADS=1 python benchmarks/layer_step.py --lora --steps 24   # LoRA r16 on all linear layers

Variants: ``eager`` (the block-diagonal mask), ``packed`` (per-sample attention), ``fused`` (fused
LoRA linears, ``sftune.train.fused_lora``), ``compile``, and any of them joined by ``+``
(``packed+fused``).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

LENGTHS = (150, 90, 200, 72)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lora", action="store_true")
    ap.add_argument("--steps", type=int, default=30, help="alternations (each runs every variant once)")
    ap.add_argument("--variants", default="eager,packed,compile,compile+packed")
    a = ap.parse_args()

    import torch
    from transformers import AutoConfig, LlamaForCausalLM
    from transformers.masking_utils import create_causal_mask

    from sftune.model.loading import resolve_model
    from sftune.train.fused_lora import fused_lora_linears
    from sftune.train.packed_attention import use_packed_attention

    cfg = AutoConfig.from_pretrained(resolve_model("default"))
    cfg._attn_implementation, cfg.num_hidden_layers = "sdpa", 1
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).train()
    if a.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM", target_modules=[
            "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    dec = (model.get_base_model() if a.lora else model).model
    layer = dec.layers[0]
    pos = torch.cat([torch.arange(n) for n in LENGTHS])[None]  # (1, 512), restarting per sample
    x0 = torch.randn(1, pos.shape[1], cfg.hidden_size)
    compiled = torch.compile(layer)

    def step(variant):
        fn = compiled if "compile" in variant else layer
        parts = variant.split("+")
        with contextlib.ExitStack() as stack:
            if "packed" in parts:
                stack.enter_context(use_packed_attention(model))
            if "fused" in parts:
                stack.enter_context(fused_lora_linears(model))
            mask = create_causal_mask(config=dec.config, inputs_embeds=x0, attention_mask=None, cache=None, position_ids=pos)
            x = x0.clone().requires_grad_(True)
            y = fn(x, attention_mask=mask, position_embeddings=dec.rotary_emb(x0, position_ids=pos), position_ids=pos)
            (y[0] if isinstance(y, tuple) else y).sum().backward()

    variants = a.variants.split(",")
    for v in variants:  # warm-up, and compilation
        step(v), step(v)
    wall = {v: [] for v in variants}
    cpu = {v: [] for v in variants}
    for r in range(a.steps):
        for v in variants if r % 2 == 0 else variants[::-1]:
            t, c = time.perf_counter(), time.process_time()
            step(v)
            wall[v].append(time.perf_counter() - t)
            cpu[v].append(time.process_time() - c)
    base = statistics.median(cpu[variants[0]])
    print(f"| variant ({'LoRA' if a.lora else 'full'}, {torch.get_num_threads()} threads) | CPU ms (median) | vs {variants[0]} | wall ms (min) |")
    print("|---|---|---|---|")
    for v in variants:
        m = statistics.median(cpu[v])
        print(f"| {v} | {1000 * m:.0f} | {100 * (m / base - 1):+.1f}% | {1000 * min(wall[v]):.0f} |")


if __name__ == "__main__":
    main()
