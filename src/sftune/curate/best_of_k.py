"""``sftune curate best-of-k``: rejection sampling. K sampled answers per prompt, the best one kept.

Candidates come from :func:`sftune.infer.generate.generate_texts` with
``num_return_sequences=K`` and sampling, seeded per prompt (``seed + input row``), so a prompt's
candidates do not depend on which other prompts are in the run or on resuming.

The score is either

- a user callable ``module:function(prompt_messages, answer) -> float`` (``prompt_messages`` are
  the prompt's messages as a chat template gets them, :meth:`Conversation.to_messages`: ``{"role",
  "content"}`` for plain rows; agent rows also carry ``tool_calls``, ``tool_call_id``, ``name``
  and ``reasoning_content``, with ``content`` None for a call-only turn; for raw prompt/completion
  rows one ``{"role": "prompt"}`` message). A function with a ``tools`` parameter also gets the
  row's tool schemas (``fn(prompt_messages, answer, tools=...)``), or
- a sequence-classification reward model (``AutoModelForSequenceClassification`` and its
  tokenizer): the prompt and answer are rendered with the reward model's chat template when it has
  one (with the row's tools), else as plain text; the score is the logit for a single-label head,
  else the logit of ``reward_label``.

The best candidate wins; ties go to the lowest candidate index (:func:`best_index`). With
``keep_scores`` every candidate and its score is stored in ``meta.candidates``. With
``drop_truncated`` a candidate cut by ``max_new_tokens`` cannot win, and a prompt whose candidates
are all cut is skipped and counted as ``cut_by_length`` (like ``distill`` without
``keep_truncated``); otherwise kept cut answers are counted in a report note.

The options (:class:`~sftune.options.curation.BestOfKOptions`) are sampling options with K as
``num_return_sequences``; every sampling value is checked there and applied.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable
from pathlib import Path

from ..config import ConfigError
from ..data.conversation import Conversation, Message
from ..options.curation import BestOfKOptions
from .io import CurateReport
from .resumable import Cut, answer_rows


def best_index(scores: list[float]) -> int:
    """The highest score; ties go to the lowest index, NaN counts as lowest.

    >>> best_index([1.0, 3.0, 3.0, 2.0]), best_index([float("nan"), 0.5])
    (1, 1)
    """
    key = [(-math.inf if s is None or math.isnan(s) else s) for s in scores]
    return max(range(len(key)), key=lambda j: (key[j], -j))


class RewardModel:
    """A sequence-classification reward model scoring (prompt, answer) pairs."""

    def __init__(self, name: str, *, device: str | None = None, label: int | None = None, batch_size: int = 8,
                 max_length: int = 2048, trust_remote_code: bool = False):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from ..model.padding import ensure_pad_token
        from ..model.precision import choose_device

        try:
            self.tok = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
            self.model = AutoModelForSequenceClassification.from_pretrained(name, trust_remote_code=trust_remote_code)
        except OSError as e:
            raise ConfigError(
                f"--reward-model {name}: cannot load a sequence-classification model and tokenizer from it ({e}). "
                "Give a local folder holding both (or a hub name when online)"
            ) from e
        ensure_pad_token(self.tok)  # batching needs padding; the last real token is found via the pad id
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tok.pad_token_id
        n = self.model.config.num_labels
        if label is None:
            label = 0 if n == 1 else n - 1
        if not 0 <= label < n:
            raise ConfigError(f"--reward-label {label}: the reward model has {n} labels (0..{n - 1})")
        self.label, self.batch_size, self.max_length, self.name = label, batch_size, max_length, name
        self.device = choose_device(device)
        self.model.to(self.device).eval()

    def text(self, prompt: list[dict], answer: str, tools: list[dict] | None = None) -> str:
        """The prompt and answer as the reward model reads them: its chat template (with ``tools``)
        for chat prompts, plain text for raw prompts or when the template refuses the messages."""
        msgs = [m for m in prompt] + [{"role": "assistant", "content": answer}]
        if getattr(self.tok, "chat_template", None) and all(m["role"] in ("system", "user", "assistant", "tool") for m in prompt):
            try:
                return self.tok.apply_chat_template(msgs, tools=tools or None, tokenize=False)
            except Exception:  # noqa: BLE001 - a template without tool roles or calls: score the plain text
                if not tools and all(m["role"] != "tool" and set(m) <= {"role", "content"} for m in prompt):
                    raise  # a plain chat the template refuses is the template's problem, said by its message
        return "\n\n".join(_plain_text(m) for m in msgs)

    def __call__(self, prompt: list[dict], answers: list[str], tools: list[dict] | None = None) -> list[float]:
        import torch

        scores: list[float] = []
        for s in range(0, len(answers), self.batch_size):
            texts = [self.text(prompt, a, tools) for a in answers[s : s + self.batch_size]]
            enc = self.tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_length).to(self.device)
            with torch.no_grad():
                logits = self.model(**enc).logits  # (batch, num_labels)
            scores.extend(logits[:, self.label].float().tolist())
        return scores


def _plain_text(m: dict) -> str:
    """A message as plain text: its content, then its tool calls as JSON."""
    calls = m.get("tool_calls")
    return (m.get("content") or "") + ("\n" + json.dumps(calls, ensure_ascii=False) if calls else "")


def takes_tools(fn: Callable) -> bool:
    """Whether ``fn`` accepts a ``tools`` keyword (a scorer that wants the row's tool schemas)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "tools" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def callable_scorer(fn: Callable, spec: str) -> Callable[..., list[float]]:
    with_tools = takes_tools(fn)

    def score(prompt: list[dict], answers: list[str], tools: list[dict] | None = None) -> list[float]:
        out = []
        for a in answers:
            try:
                v = fn(prompt, a, tools=tools) if with_tools else fn(prompt, a)
                out.append(float(v))
            except Exception as e:
                raise ConfigError(
                    f"--reward {spec} failed on an answer: {type(e).__name__}: {e}. It is called as "
                    "fn(prompt_messages: list[dict], answer: str) and must return a number"
                ) from e
        return out

    return score


def best_of_k(
    convs: list[Conversation],
    model,
    tokenizer,
    scorer: Callable[[list[dict], list[str]], list[float]],
    output: str | Path,
    report: CurateReport,
    opts: BestOfKOptions | None = None,
    *,
    policy: str = "model",
    reward: str = "reward",
    progress: bool = True,
    tool_use: dict | None = None,
) -> int:
    """Generate K candidates per prompt, keep the best-scored one; appends to ``output`` (resumable).

    ``tool_use``: tools offered to rows without their own, the template's variables and the
    policy's tool format (see :func:`sftune.curate.resumable.answer_rows`); the scorer sees the
    raw answers and the tools the prompt was offered.
    """
    opts = opts or BestOfKOptions()
    cut_kept = 0
    # the row's tool schemas go to a scorer that takes them (a RewardModel, callable_scorer, fn(..., tools=))
    with_tools = takes_tools(scorer)

    offered = (tool_use or {}).get("tools")

    def pick(i: int, prompt: list[Message], cands: list[dict]) -> tuple[dict, dict] | Cut:
        nonlocal cut_kept
        msgs, answers, tools = [m.to_template() for m in prompt], [c["text"] for c in cands], convs[i].tools or offered
        scores = scorer(msgs, answers, tools=tools) if tools and with_tools else scorer(msgs, answers)
        ranked = scores
        if opts.drop_truncated:  # a cut-off answer would teach the model to stop mid-sentence
            ranked = [s if c["finish_reason"] != "length" else math.nan for c, s in zip(cands, scores)]
            if all(c["finish_reason"] == "length" for c in cands):
                return Cut(f"all {opts.k} candidates cut at max_new_tokens {opts.max_new_tokens}")
        b = best_index(ranked)
        cut_kept += cands[b]["finish_reason"] == "length"
        meta = {"policy": policy, "reward": reward, "k": opts.k, "score": scores[b], "candidate": b, "finish_reason": cands[b]["finish_reason"]}
        if opts.keep_scores:
            meta["candidates"] = [{"text": c["text"], "score": s, "finish_reason": c["finish_reason"]} for c, s in zip(cands, scores)]
        return cands[b], meta

    # One prompt per call: its K candidates are seeded by its own input row (seed + row), so they do
    # not depend on which other prompts are in the run or on resuming.
    written = answer_rows(
        convs, model, tokenizer, output, report, pick, chunk=1, batch_size=1, seed=opts.seed, progress=progress,
        desc=f"best-of-{opts.k}", tool_use=tool_use, **opts.generation_args(),
    )
    if cut_kept:
        report.notes.append(
            f"{cut_kept} kept answers were cut by max_new_tokens (meta.finish_reason = 'length'): raise --max-new-tokens, "
            "use --drop-truncated, or run `sftune curate filter --truncated` on the output"
        )
    report.details.update({"policy": policy, "reward": reward, "options": opts.model_dump(), "written_now": written})
    return written
