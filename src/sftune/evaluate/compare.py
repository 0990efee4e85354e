"""Before/after: the same questions, held-out data and general text given to a base model and a
fine-tuned model, with everything needed for the side-by-side report.

``evaluate()`` is the library function behind ``sftune eval``. It keeps one model in memory at a
time: the fine-tuned model is scored first; for an adapter whose base is the one compared
against, the base is the same loaded ``PeftModel`` with its adapter switched off
(``disable_adapter()``), otherwise the fine-tuned model is freed before the base is loaded.

Both models use the fine-tuned run's tokenizer, which carries the chat template training used,
so both are asked with exactly the same prompt tokens and scored on exactly the same labels.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..data.conversation import Conversation, Message
from .scores import mean_scores, score

log = logging.getLogger("sftune")

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
DEFAULT_QUESTIONS = RESOURCES / "eval_questions.json"


# ---- questions --------------------------------------------------------------------------------
@dataclass
class Question:
    """One prompt to answer, with its reference answer when the data has one."""

    prompt: object
    """What ``generate_texts`` takes: a message list (as a chat template gets it,
    :meth:`Conversation.to_messages`: tool calls, tool results and reasoning included), or a
    non-chat ``Conversation`` (raw prompt)."""
    question: str
    """The text shown in reports: the last user message (or the raw prompt)."""
    reference: str | None = None
    group: str | None = None
    source: str | None = None
    tools: list[dict] | None = None
    """The tool schemas the row offers the model (given to the chat template with ``prompt``)."""

    @classmethod
    def from_conversation(cls, conv: Conversation, group: str | None = None) -> "Question":
        """A chat ending in an assistant turn gives that turn as the reference; the rest is the prompt.

        >>> c = Conversation.chat([Message("user", "1+1?"), Message("assistant", "2")])
        >>> q = Question.from_conversation(c)
        >>> q.prompt, q.question, q.reference
        ([{'role': 'user', 'content': '1+1?'}], '1+1?', '2')
        """
        src = str(conv.source) if conv.source else None
        if conv.kind == "chat":
            msgs = conv.to_messages()
            reference = None
            if msgs and msgs[-1]["role"] == "assistant":
                reference = msgs.pop()["content"]
            users = [m["content"] for m in msgs if m["role"] == "user"]
            question = users[-1] if users else ((msgs[-1]["content"] or "") if msgs else "")
            return cls(msgs, question, reference or None, group, src, conv.tools)
        prompt = conv.messages[0].content
        reference = conv.messages[1].content if conv.kind == "completion" else None
        return cls(Conversation(messages=[Message("prompt", prompt)], kind="completion"), prompt, reference or None, group, src)


def _grouped_json(path: Path) -> dict | None:
    """``{"group": ["question", ...], ...}`` (the bundled layout), else None."""
    if path.suffix.lower() != ".json":
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # not ours: let the readers report what is wrong with it
    if isinstance(data, dict) and data and all(isinstance(v, list) and all(isinstance(q, str) for q in v) for v in data.values()):
        return data
    return None


def load_questions(path: str | Path | None = None, *, system_prompt: str | None = None) -> tuple[list[Question], dict | None]:
    """Questions from a file, or the bundled ones (``resources/eval_questions.json``).

    Accepted: any data format sftune reads (alpaca, sharegpt, messages, prompt/completion, text;
    jsonl/json/csv/parquet), answers optional (a present answer becomes the reference); a JSON
    object of question lists by group (the bundled layout); a ``.txt`` file with one question
    per line. Returns the questions and the reading report (``None`` for the simple layouts).
    """
    from ..config import DataSource
    from ..data.readers import read_conversations
    from ..data.report import DataReport

    p = Path(path) if path is not None else DEFAULT_QUESTIONS
    if not p.exists():
        raise FileNotFoundError(f"questions file not found: {p}")
    sys_msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
    grouped = _grouped_json(p)
    if grouped is not None:
        qs = [
            Question(sys_msgs + [{"role": "user", "content": q}], q, None, g, f"{p}:{g}[{i}]")
            for g, items in grouped.items()
            for i, q in enumerate(items)
        ]
        return qs, None
    if p.suffix.lower() == ".txt":
        lines = p.read_text(encoding="utf-8").splitlines()
        return [Question(sys_msgs + [{"role": "user", "content": q.strip()}], q.strip(), source=f"{p}:{n}") for n, q in enumerate(lines, 1) if q.strip()], None
    report = DataReport()
    convs = read_conversations(DataSource(path=str(p)), report, system_prompt=system_prompt, require_answer=False)
    report.kept = len(convs)
    if not convs:
        from ..data.report import DataError

        raise DataError(f"no usable questions:\n{report.summary()}", str(p), fix="give one question per row in any format sftune reads")
    return [Question.from_conversation(c) for c in convs], report.to_dict()


# ---- which base ------------------------------------------------------------------------------
def recorded_base(model_dir: str | Path, cache_dir=None) -> str | None:
    """The base model a fine-tuned folder came from: ``model:`` in its ``sftune_config.yaml``,
    else an adapter's recorded base; ``None`` when the folder does not say.
    """
    import yaml

    from ..model.loading import adapter_base, is_adapter_dir

    p = Path(model_dir)
    if not p.is_dir():
        return None
    cfg_file = p / "sftune_config.yaml"
    if cfg_file.is_file():
        model = (yaml.safe_load(cfg_file.read_text(encoding="utf-8")) or {}).get("model")
        if model and Path(str(model)).resolve() != p.resolve():
            return str(model)
    if is_adapter_dir(p):
        return adapter_base(p, cache_dir)
    return None


def _same_model(a: str, b: str, cache_dir=None) -> bool:
    from ..model.loading import resolve_model

    try:
        ra, rb = resolve_model(a, cache_dir), resolve_model(b, cache_dir)
    except Exception:  # noqa: BLE001 - undecidable means "load it separately"
        return False
    if Path(ra).exists() and Path(rb).exists():
        return Path(ra).resolve() == Path(rb).resolve()
    return ra == rb


def run_config(model: str, cache_dir=None):
    """The run's ``SFTConfig`` (``sftune_config.yaml`` beside the weights), else the defaults.

    The template is left to the tokenizer: the run's saved tokenizer carries the template that
    training used, and a template named by a relative path may not exist from here.
    """
    from ..config import SFTConfig, load_config

    f = Path(model) / "sftune_config.yaml"
    cfg = load_config(f) if f.is_file() else SFTConfig(model=model)
    update: dict = {"template": None, "data": [], "eval_data": []}
    if cache_dir is not None:
        update["cache_dir"] = cache_dir
    return cfg.model_copy(update=update)


# ---- answers ------------------------------------------------------------------------------------
def answer(
    model, tokenizer, questions: list[Question], *, max_new_tokens: int = 256, batch_size: int = 8, progress: bool = False
) -> list[dict]:
    """Greedy answers, one dict per question: ``text``, ``completion_tokens``, ``finish_reason``.

    Questions are asked in groups of the same ``tools`` (``generate_texts`` takes one tool list
    per call); plain questions are one group, asked as before."""
    from ..infer.generate import generate_texts

    groups: dict[str, list[int]] = {}
    for i, q in enumerate(questions):
        groups.setdefault(json.dumps(q.tools, sort_keys=True), []).append(i)
    out: list = [None] * len(questions)
    for idx in groups.values():
        answers = generate_texts(
            model, tokenizer, [questions[i].prompt for i in idx], max_new_tokens=max_new_tokens, temperature=0.0,
            batch_size=batch_size, progress=progress, tools=questions[idx[0]].tools,
        )
        for i, r in zip(idx, answers):
            out[i] = r
    return [
        {"text": r[0]["text"].strip(), "completion_tokens": r[0]["completion_tokens"], "finish_reason": r[0]["finish_reason"]}
        for r in out
    ]


# ---- the whole evaluation ------------------------------------------------------------------------
@dataclass
class EvalResult:
    """Everything ``sftune eval`` measured; ``to_dict()`` is ``eval.json``."""

    model: str
    base: str | None
    adapter: bool
    settings: dict
    heldout: dict | None = None
    forgetting: dict | None = None
    questions: list[dict] = field(default_factory=list)
    scores: dict | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    created: str = ""

    def to_dict(self) -> dict:
        from .. import __version__

        return {
            "sftune_version": __version__,
            "created": self.created,
            "model": self.model,
            "base": self.base,
            "adapter": self.adapter,
            "settings": self.settings,
            "heldout": self.heldout,
            "forgetting": self.forgetting,
            "questions": self.questions,
            "scores": self.scores,
            "notes": self.notes,
            "seconds": self.seconds,
        }


def _score_side(model, tokenizer, *, heldout_prep, general_prep, questions, max_new_tokens, batch_size, progress) -> dict:
    """Held-out loss, general-text loss and answers for one model."""
    from ..model.padding import pad_id
    from .heldout import token_loss

    pad = pad_id(tokenizer)
    side: dict = {}
    if heldout_prep is not None:
        side["heldout"] = token_loss(model, heldout_prep.dataset, pad_token_id=pad, batch_size=batch_size, progress=progress, desc="held-out loss")
    if general_prep is not None:
        side["general"] = token_loss(
            model, general_prep.dataset, pad_token_id=pad, batch_size=batch_size, progress=progress, desc="general-text loss"
        )
    side["answers"] = answer(model, tokenizer, questions, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress)
    return side


def evaluate(
    model: str,
    *,
    base: str | None = None,
    data: list | None = None,
    questions: str | Path | None = None,
    ask: bool = True,
    general_text: str | Path | None = None,
    forgetting: bool = True,
    compare: bool = True,
    max_new_tokens: int = 256,
    batch_size: int = 8,
    forgetting_threshold: float | None = None,
    cache_dir: str | None = None,
    device: str | None = None,
    precision="auto",
    use_cache: bool = True,
    progress: bool = False,
) -> EvalResult:
    """Evaluate a fine-tuned ``model`` (run folder, model folder, adapter, ``default``) against ``base``.

    ``data``: held-out ``DataSource`` list (prepared with the run's mask and max_length).
    ``questions``: a questions file (see :func:`load_questions`), default the bundled ones;
    ``ask=False`` skips answering. ``general_text``: text for the forgetting check (default the
    bundled replay text); ``forgetting=False`` skips it. ``compare=False`` scores the fine-tuned
    model alone (no base model is loaded). ``base`` defaults to the one the run recorded.
    ``precision`` (``auto``, ``fp32``, ``bf16``, ``fp16``) is the dtype both models are loaded in;
    see :func:`sftune.model.precision.choose_precision`.
    """
    from ..model.loading import ModelLoadError, adapter_base, is_adapter_dir, load_for_inference, load_model, resolve_model
    from ..model.precision import choose_device, inference_dtype
    from .forgetting import DEFAULT_GENERAL_TEXT, DEFAULT_THRESHOLD, Forgetting, prepare_general_text
    from .heldout import prepare_rows

    t0 = time.perf_counter()
    threshold = DEFAULT_THRESHOLD if forgetting_threshold is None else forgetting_threshold
    notes: list[str] = []
    cfg = run_config(model, cache_dir)
    path = resolve_model(model, cache_dir)
    adapter = is_adapter_dir(path)
    if compare and base is None:
        base = recorded_base(path, cache_dir)
        if base is None:
            notes.append(f"no base model recorded in {model} (no sftune_config.yaml or adapter_config.json); pass --base MODEL to compare")
            compare = False
    if not compare:
        base = None
    settings = {
        "max_new_tokens": max_new_tokens, "greedy": True, "batch_size": batch_size,
        "mask": cfg.mask, "max_length": cfg.max_length, "forgetting_threshold": threshold,
    }

    ft_model, tokenizer = load_for_inference(model, precision=precision, cache_dir=cache_dir, device=device)
    qs, q_report = load_questions(questions, system_prompt=cfg.system_prompt) if ask else ([], None)
    heldout_prep = None
    if data:
        heldout_prep = prepare_rows(cfg.model_copy(update={"data": list(data)}), tokenizer, list(data), use_cache=use_cache)
    general_prep = None
    if forgetting:
        general_prep = prepare_general_text(cfg, tokenizer, general_text, use_cache=use_cache)
    kw = dict(heldout_prep=heldout_prep, general_prep=general_prep, questions=qs, max_new_tokens=max_new_tokens, batch_size=batch_size,
              progress=progress)

    log.info("evaluating the fine-tuned model %s ...", model)
    ft = _score_side(ft_model, tokenizer, **kw)
    b = None
    if compare:
        if adapter and hasattr(ft_model, "disable_adapter") and _same_model(base, adapter_base(path, cache_dir), cache_dir):
            log.info("evaluating the base model %s (the adapter switched off) ...", base)
            with ft_model.disable_adapter():
                b = _score_side(ft_model, tokenizer, **kw)
        else:
            del ft_model
            gc.collect()
            log.info("evaluating the base model %s ...", base)
            # The base gets the fine-tuned tokenizer (same prompts, same labels); see the module docstring.
            dev = choose_device(device)
            base_model = load_model(base, dtype=inference_dtype(precision, device=dev), cache_dir=cache_dir).to(dev).eval()
            n_embed = base_model.get_input_embeddings().weight.shape[0]
            if n_embed < len(tokenizer):
                raise ModelLoadError(
                    f"the base model {base} has {n_embed} token embeddings but {model}'s tokenizer has {len(tokenizer)} "
                    "tokens: they do not share a vocabulary.\n  fix: pass --base with the model this run was fine-tuned from"
                )
            b = _score_side(base_model, tokenizer, **kw)
            del base_model
            gc.collect()

    res = EvalResult(model=str(model), base=base, adapter=adapter, settings=settings, notes=notes)
    if heldout_prep is not None:
        res.heldout = {
            "data": [s.path for s in data],
            "report": heldout_prep.report.to_dict(),
            "fine_tuned": ft["heldout"].to_dict(),
            "base": b["heldout"].to_dict() if b else None,
        }
    if general_prep is not None:
        data_path = str(general_text or DEFAULT_GENERAL_TEXT)
        if b:
            f = Forgetting(data_path, b["general"], ft["general"], threshold)
            res.forgetting = f.to_dict()
            if f.warning:
                log.warning("warning: %s", f.warning)
        else:
            res.forgetting = {
                "data": data_path, "base": None, "fine_tuned": ft["general"].to_dict(),
                "relative_change": None, "threshold": threshold, "warning": None,
            }
    per_side = {"fine_tuned": [], "base": []}
    for i, q in enumerate(qs):
        row = {
            "id": i, "group": q.group, "source": q.source, "question": q.question,
            "prompt": q.prompt if isinstance(q.prompt, list) else q.prompt.messages[0].content,
            **({"tools": q.tools} if q.tools else {}),
            "reference": q.reference,
            "fine_tuned": ft["answers"][i], "base": b["answers"][i] if b else None,
        }
        if q.reference is not None:
            for side, ans in (("fine_tuned", ft["answers"][i]), ("base", b["answers"][i] if b else None)):
                if ans is not None:
                    ans["scores"] = score(ans["text"], q.reference)
                    per_side[side].append(ans["scores"])
        res.questions.append(row)
    if per_side["fine_tuned"]:
        res.scores = {"fine_tuned": mean_scores(per_side["fine_tuned"]), "base": mean_scores(per_side["base"]) if b else None}
    if q_report and q_report.get("dropped"):
        notes.append(f"questions: {q_report['dropped']} rows dropped while reading {questions}: {q_report['dropped_by_reason']}")
    res.seconds = round(time.perf_counter() - t0, 2)
    res.created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return res
