"""Batched generation with the model's chat template: the one path every answer in sftune takes.

Training-time before/after answers, ``sftune generate``, ``eval``, ``curate distill`` and the
server all render prompts the same way (the tokenizer's chat template with
``add_generation_prompt=True``), so what is measured is what a user gets.
"""

from __future__ import annotations

from typing import Iterable


def _eos_ids(model, tokenizer) -> list[int]:
    """Every token that ends a turn: the tokenizer's EOS plus the generation config's."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif eos:
        ids.update(int(e) for e in eos)
    return sorted(ids)


def render_prompt(tokenizer, conv) -> str:
    """The prompt text for a message list or a :class:`~sftune.data.conversation.Conversation`."""
    from ..data.conversation import Conversation

    if isinstance(conv, Conversation):
        if conv.kind != "chat":
            return conv.messages[0].content  # raw prompt of prompt/completion or text data
        msgs = [{"role": m.role, "content": m.content} for m in conv.prompt_messages]
    else:
        msgs = list(conv)
        if msgs and msgs[-1].get("role") == "assistant":
            msgs = msgs[:-1]
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def generate_texts(
    model,
    tokenizer,
    conversations: Iterable,
    *,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    repetition_penalty: float = 1.0,
    num_return_sequences: int = 1,
    batch_size: int = 8,
    seed: int | None = None,
    progress: bool = False,
) -> list[list[dict]]:
    """Answer each conversation; returns, per input, ``num_return_sequences`` dicts
    ``{"text", "prompt_tokens", "completion_tokens", "finish_reason"}`` in input order.

    Prompts are sorted by length before batching (less padding) and padded on the left, so
    every row's answer starts right after its own prompt.
    """
    import torch
    from tqdm.auto import tqdm

    prompts = [render_prompt(tokenizer, c) for c in conversations]
    if not prompts:
        return []
    if seed is not None:
        torch.manual_seed(seed)
    eos = _eos_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    # Templates such as SmolLM2's already contain BOS-like tokens; never add a second one.
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]), reverse=True)
    device = next(model.parameters()).device
    sample = temperature > 0
    gen_kw = dict(
        max_new_tokens=max_new_tokens,
        do_sample=sample,
        num_return_sequences=num_return_sequences,
        eos_token_id=eos,
        pad_token_id=pad_id,
        repetition_penalty=repetition_penalty,
    )
    if sample:
        gen_kw.update(temperature=temperature, top_p=top_p, top_k=top_k)
    else:
        gen_kw.update(temperature=None, top_p=None, top_k=None)
    results: list[list[dict] | None] = [None] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        with tqdm(total=len(prompts), desc="generating", unit="prompt", disable=not progress) as bar:
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                width = max(len(encoded[i]) for i in idx)
                ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for r, i in enumerate(idx):
                    n = len(encoded[i])
                    ids[r, width - n :] = torch.tensor(encoded[i])
                    mask[r, width - n :] = 1
                with torch.no_grad():
                    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **gen_kw)
                new = out[:, width:].cpu()
                for r, i in enumerate(idx):
                    answers = []
                    for k in range(num_return_sequences):
                        row = new[r * num_return_sequences + k].tolist()
                        stop = next((j for j, t in enumerate(row) if t in eos), None)
                        toks = row if stop is None else row[:stop]
                        answers.append(
                            {
                                "text": tokenizer.decode(toks, skip_special_tokens=True),
                                "prompt_tokens": len(encoded[i]),
                                "completion_tokens": len(toks) + (stop is not None),
                                "finish_reason": "length" if stop is None else "stop",
                            }
                        )
                    results[i] = answers
                bar.update(len(idx))
    finally:
        model.train(was_training)
    return results  # type: ignore[return-value]
