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


def render_prompt(tokenizer, conv, *, tools: list | None = None, template_kwargs: dict | None = None) -> str:
    """The prompt text for a message list or a :class:`~sftune.data.conversation.Conversation`.

    A conversation's messages reach the template as in training (``Message.to_template``: tool
    calls, tool results and reasoning included), with its own ``tools`` (else ``tools``) and the
    training ``template_kwargs``; tool-call arguments in the form the template takes
    (:func:`~sftune.data.toolcalls.template_call_form`).
    """
    from ..data.conversation import Conversation
    from ..data.toolcalls import template_call_form

    form = template_call_form(tokenizer, None, template_kwargs)
    if isinstance(conv, Conversation):
        if conv.kind != "chat":
            return conv.messages[0].content  # raw prompt of prompt/completion or text data
        msgs = conv.to_messages(form)[: len(conv.prompt_messages)]  # with the call ids training gave them
        tools = conv.tools or tools
    else:
        msgs = list(conv)
        if msgs and msgs[-1].get("role") == "assistant":
            msgs = msgs[:-1]
        msgs = form.messages(msgs)
    return tokenizer.apply_chat_template(msgs, tools=tools or None, tokenize=False, add_generation_prompt=True,
                                         **(template_kwargs or {}))


def encode_prompt(tokenizer, conv, **render) -> list[int]:
    """Token ids of :func:`render_prompt`'s text.

    Templates such as SmolLM2's already start with their own special tokens, so the tokenizer
    must not add a second BOS.
    """
    return tokenizer(render_prompt(tokenizer, conv, **render), add_special_tokens=False)["input_ids"]


def generation_kwargs(model, tokenizer, **sampling) -> dict:
    """Keyword arguments for ``model.generate``: greedy when ``temperature == 0``, else sampling.

    ``sampling`` is :class:`~sftune.options.SamplingOptions`' fields (checked and defaulted
    there; pass ``**opts.generation_args()``) except ``seed`` and ``stop``, which the callers
    apply around ``generate``. The model's own generation_config may ask for sampling; greedy
    here means greedy, so the sampling knobs are explicitly switched off rather than left to the
    saved config. Frequency/presence penalties and logit_bias become logits processors
    (:mod:`sftune.infer.logits`); logit_bias ids outside the model's vocabulary are refused.
    """
    from ..options import SamplingOptions
    from .logits import sampling_processors

    applied_elsewhere = sorted({"seed", "stop"} & set(sampling))
    if applied_elsewhere:  # accepting them here would drop them silently
        raise TypeError(f"generation_kwargs() does not apply {applied_elsewhere}: seed goes to generate_texts or stream_generate, stop to stream_generate")
    opts = SamplingOptions(**sampling)
    opts.check_vocab(vocab_size(model, tokenizer))
    from ..model.padding import pad_id

    eos = _eos_ids(model, tokenizer)
    kw = dict(
        max_new_tokens=opts.max_new_tokens,
        do_sample=opts.temperature > 0,
        num_return_sequences=opts.num_return_sequences,
        eos_token_id=eos,
        pad_token_id=pad_id(tokenizer, eos),
        repetition_penalty=opts.repetition_penalty,
    )
    if opts.temperature > 0:
        kw.update(temperature=opts.temperature, top_p=opts.top_p, top_k=opts.top_k)
    else:
        kw.update(temperature=None, top_p=None, top_k=None)
    processors = sampling_processors(frequency_penalty=opts.frequency_penalty, presence_penalty=opts.presence_penalty,
                                     logit_bias=opts.logit_bias)
    if processors:
        from transformers import LogitsProcessorList

        kw["logits_processor"] = LogitsProcessorList(processors)
    return kw


def vocab_size(model, tokenizer) -> int:
    """Rows of the model's output layer (the ids it can generate), else the tokenizer's size."""
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if out is not None and getattr(out, "weight", None) is not None:
        return int(out.weight.shape[0])
    return len(tokenizer)


class TextStream:
    """Follows one sequence as it is generated: text deltas out, stop strings and cancellation in.

    It is used as a stopping criterion (``generate`` only calls it: duck typing, no transformers
    import here) rather than as a streamer because generate calls stopping criteria right after
    each token is appended (streamers get tokens later, and one step late on some devices), so a
    stop string ends generation on the very token that completes it.

    Text that could still turn into a stop string, or that ends in half of a multi-byte
    character (decoded as U+FFFD), is held back until it is safe to show.

    For example with ``stop=["world"]``, new tokens decoding to ``"Hello wor"`` emit ``"Hello "``
    and hold ``"wor"`` back; the next token completing ``"world"`` ends generation with text
    ``"Hello "``.
    """

    def __init__(self, tokenizer, prompt_len: int, eos_ids, on_text=None, stop=(), should_cancel=None):
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.eos_ids = set(eos_ids)
        self.on_text = on_text
        self.stop = [s for s in stop if s]
        self.should_cancel = should_cancel
        self.tokens: list[int] = []
        self.text = ""  # everything decoded so far, cut at a stop string once one is found
        self.sent = 0  # how many characters of ``text`` were emitted
        self.hit_eos = False
        self.hit_stop = False

    def _held_back(self, text: str) -> int:
        """Length of the tail of ``text`` that must not be shown yet."""
        if text.endswith("\ufffd"):
            return 1
        hold = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:k]):
                    hold = max(hold, k)
                    break
        return hold

    def _emit(self, upto: int) -> None:
        if upto > self.sent:
            delta = self.text[self.sent : upto]
            self.sent = upto
            if self.on_text is not None:
                self.on_text(delta)

    def __call__(self, input_ids, scores=None, **kwargs):
        import torch

        done = self.hit_eos or self.hit_stop
        if not done:
            new = input_ids[0, self.prompt_len :].tolist()
            self.tokens = new
            if new and new[-1] in self.eos_ids:
                self.hit_eos = True
                new = new[:-1]
            self.text = self.tokenizer.decode(new, skip_special_tokens=True)
            cut = min((i for i in (self.text.find(s) for s in self.stop) if i >= 0), default=-1)
            if cut >= 0:
                self.text, self.hit_stop = self.text[:cut], True
            if self.hit_eos or self.hit_stop:
                self._emit(len(self.text))
            else:
                self._emit(len(self.text) - self._held_back(self.text))
            done = self.hit_eos or self.hit_stop
        if self.should_cancel is not None and self.should_cancel():
            done = True
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    def finish(self) -> dict:
        """Flush held-back text; the result dict of :func:`generate_texts`' shape (without prompt_tokens)."""
        self._emit(len(self.text))
        return {
            "text": self.text,
            "completion_tokens": len(self.tokens),
            "finish_reason": "stop" if (self.hit_eos or self.hit_stop) else "length",
        }


def stream_generate(
    model,
    tokenizer,
    prompt_ids: list[int],
    *,
    on_text=None,
    stop=(),
    seed: int | None = None,
    should_cancel=None,
    **sampling,
) -> dict:
    """Generate one answer token by token, calling ``on_text(delta)`` as text becomes final.

    Used by ``sftune chat`` and the server. ``sampling`` takes :func:`generation_kwargs`'
    arguments. Returns ``{"text", "prompt_tokens", "completion_tokens", "finish_reason"}``;
    ``finish_reason`` is ``"stop"`` for EOS, a stop string, or cancellation, ``"length"`` when
    ``max_new_tokens`` ran out.
    """
    import torch
    from transformers import StoppingCriteriaList

    kw = generation_kwargs(model, tokenizer, **sampling)
    tracker = TextStream(tokenizer, len(prompt_ids), kw["eos_token_id"], on_text, stop, should_cancel)
    device = next(model.parameters()).device
    ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), stopping_criteria=StoppingCriteriaList([tracker]), **kw)
    out = tracker.finish()
    out["prompt_tokens"] = len(prompt_ids)
    return out


def generate_texts(
    model,
    tokenizer,
    conversations: Iterable,
    *,
    batch_size: int = 8,
    seed: int | None = None,
    progress: bool = False,
    tools: list | None = None,
    template_kwargs: dict | None = None,
    tool_format=None,
    **sampling,
) -> list[list[dict]]:
    """Answer each conversation; returns, per input, ``num_return_sequences`` dicts
    ``{"text", "prompt_tokens", "completion_tokens", "finish_reason"}`` in input order.

    Prompts are sorted by length before batching (less padding) and padded on the left, so
    every row's answer starts right after its own prompt. ``sampling`` is
    :func:`generation_kwargs`' arguments (``max_new_tokens``, ``temperature``, ...,
    ``num_return_sequences``; e.g. ``**SamplingOptions(...).generation_args()``).
    ``tools`` and ``template_kwargs`` go to the chat template; with a ``tool_format`` (a name, a
    declared format, ``"auto"`` to detect it from the template) each answer also gets
    ``message``: the reply read into ``content``, ``reasoning_content`` and ``tool_calls``.
    """
    import torch
    from tqdm.auto import tqdm

    encoded = [encode_prompt(tokenizer, c, tools=tools, template_kwargs=template_kwargs) for c in conversations]
    if not encoded:
        return []
    if seed is not None:
        torch.manual_seed(seed)
    gen_kw = generation_kwargs(model, tokenizer, **sampling)
    eos, pad_id, num_return_sequences = gen_kw["eos_token_id"], gen_kw["pad_token_id"], gen_kw["num_return_sequences"]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
    device = next(model.parameters()).device
    results: list[list[dict] | None] = [None] * len(encoded)
    was_training = model.training
    model.eval()
    try:
        with tqdm(total=len(encoded), desc="generating", unit="prompt", disable=not progress) as bar:
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
    if tool_format is not None:
        _read_replies(tokenizer, encoded, results, tool_format)
    return results  # type: ignore[return-value]


def _read_replies(tokenizer, encoded: list[list[int]], results: list[list[dict]], tool_format) -> None:
    """Add ``message`` (content, reasoning_content, tool_calls) to every answer, read in ``tool_format``."""
    from .toolcalls import parse_output, prompt_opens_reasoning
    from .toolformat import resolve_format

    fmt = resolve_format(None if tool_format == "auto" else tool_format, getattr(tokenizer, "chat_template", None))
    for ids, answers in zip(encoded, results):
        opened = prompt_opens_reasoning(tokenizer.decode(ids), fmt)
        for a in answers:
            a["message"] = parse_output(a["text"], fmt, in_reasoning=opened).message()


# ``sftune generate``'s file driver lives in answer_file.py; these names stay importable from here.
from .answer_file import generate_file, read_prompts  # noqa: E402,F401
