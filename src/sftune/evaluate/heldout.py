"""Held-out loss and perplexity, counted on trained tokens only.

The data goes through the same preparation as training (``sftune.data.prepare``: same reader,
chat template, mask policy and ``max_length``), so "trained tokens" means exactly the tokens
whose labels training would have used. The loss is the *token-level* mean over the whole set:

    loss = sum of cross-entropy over every trained token / number of trained tokens

not a mean of per-batch means (which would weight a token in a short batch more than one in a
long batch, and change with the batch size). Perplexity is ``exp(loss)``.

Labels are aligned with ``input_ids`` (the model shifts them, as in training): the token at
position ``t`` is predicted from positions ``< t``, so a trained label at position 0 cannot be
scored and is not counted, exactly as in the Trainer's loss.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

from ..data.tokenize import IGNORE_INDEX
from ..model.padding import pad_id

log = logging.getLogger("sftune")


@dataclass
class LossResult:
    """Token-level loss over a set of rows."""

    loss: float
    """Summed cross-entropy / ``tokens`` (nats per trained token)."""
    perplexity: float
    """``exp(loss)``; ``inf`` when that overflows a float."""
    tokens: int
    """Trained tokens scored (labels != -100, position 0 excluded)."""
    rows: int
    """Rows scored."""

    def to_dict(self) -> dict:
        return asdict(self)


def perplexity(loss: float) -> float:
    """``exp(loss)``, with ``inf`` instead of an OverflowError.

    >>> round(perplexity(1.0), 4), perplexity(1e4)
    (2.7183, inf)
    """
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


def _batches(lengths: list[int], batch_size: int, max_batch_tokens: int) -> list[list[int]]:
    """Row indices grouped longest-first; each batch has at most ``batch_size`` rows and at most
    ``max_batch_tokens`` padded tokens (a single longer row still gets its own batch).

    Sorting by length cuts padding; it cannot change the result, which is a sum over tokens.

    >>> _batches([3, 10, 5, 4], batch_size=2, max_batch_tokens=100)
    [[1, 2], [3, 0]]
    >>> _batches([3, 10, 5, 4], batch_size=8, max_batch_tokens=12)
    [[1], [2, 3], [0]]
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    out: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        # Rows come longest first, so the batch's padded width is its first row's length.
        width = lengths[cur[0]] if cur else lengths[i]
        if cur and (len(cur) >= batch_size or width * (len(cur) + 1) > max_batch_tokens):
            out.append(cur)
            cur = []
        cur.append(i)
    if cur:
        out.append(cur)
    return out


def token_loss(
    model,
    rows,
    *,
    pad_token_id: int = 0,
    batch_size: int = 8,
    max_batch_tokens: int = 4096,
    progress: bool = False,
    desc: str = "loss",
) -> LossResult:
    """Summed next-token cross-entropy over trained labels, divided by their number.

    ``rows``: a ``datasets.Dataset`` or a list of dicts with ``input_ids`` and ``labels``
    (as ``sftune.data.prepare`` makes them). ``max_batch_tokens`` bounds the logits tensor
    (rows × width × vocab floats), which dominates memory for large vocabularies.
    """
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from ..data.collate import PaddingCollator

    if hasattr(rows, "column_names"):  # a datasets.Dataset: read the two columns once
        ids_col, labels_col = rows["input_ids"], rows["labels"]
        rows = [{"input_ids": i, "labels": l} for i, l in zip(ids_col, labels_col)]
    rows = list(rows)
    collate = PaddingCollator(pad_token_id=pad_token_id)
    device = next(model.parameters()).device
    total = torch.zeros((), dtype=torch.float64)
    n_tokens = 0
    was_training = model.training
    model.eval()
    try:
        batches = _batches([len(r["input_ids"]) for r in rows], batch_size, max_batch_tokens)
        for idx in tqdm(batches, desc=desc, unit="batch", disable=not progress):
            batch = collate([rows[i] for i in idx])
            ids = batch["input_ids"].to(device)  # (B, T)
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=batch["attention_mask"].to(device)).logits
            # Prompt tuning (peft) prepends virtual tokens to the sequence: keep the last T positions.
            logits = logits[:, -ids.shape[1] :, :]
            # Position t predicts token t+1: (B, T-1, V) against (B, T-1).
            shift_logits = logits[:, :-1, :].float()
            shift_labels = batch["labels"][:, 1:].to(device)
            total += F.cross_entropy(
                shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                ignore_index=IGNORE_INDEX, reduction="sum",
            ).double().cpu()
            n_tokens += int((shift_labels != IGNORE_INDEX).sum())
    finally:
        model.train(was_training)
    if n_tokens == 0:
        raise ValueError("no trained tokens to score: every label is -100 (check the mask policy and the data)")
    loss = float(total) / n_tokens
    return LossResult(loss=loss, perplexity=perplexity(loss), tokens=n_tokens, rows=len(rows))


@dataclass
class HeldoutResult:
    """The loss of one model on a prepared data set, and what preparing it kept and dropped."""

    result: LossResult
    report: dict
    """``DataReport.to_dict()`` of the preparation."""
    sources: list[str]


def prepare_rows(cfg, tokenizer, sources, *, use_cache: bool = True, progress: bool = False):
    """Prepare ``sources`` exactly as training would (``cfg``'s template, mask, max_length).

    Returns the ``Prepared`` object of ``sftune.data.prepare``. Raises ``DataError`` naming the
    files when nothing trainable is left.
    """
    from ..data.prepare import prepare
    from ..data.report import DataError

    prep = prepare(cfg, tokenizer, list(sources), use_cache=use_cache, progress=progress)
    if len(prep.dataset) == 0:
        paths = ", ".join(s.path for s in sources)
        raise DataError(f"no rows left to evaluate after preparation:\n{prep.report.summary()}", paths,
                        fix="check the format and the mask policy (every row needs at least one trained token)")
    return prep


def heldout_loss(
    model, tokenizer, cfg, sources, *, batch_size: int = 8, use_cache: bool = True, progress: bool = False, prepared=None
) -> HeldoutResult:
    """Loss and perplexity of ``model`` on held-out ``sources`` (``DataSource`` list).

    ``cfg`` is the ``SFTConfig`` of the run (template, mask, max_length, format, system
    prompt); pass ``prepared`` to score data already prepared (e.g. for a second model).
    """
    prep = prepared or prepare_rows(cfg, tokenizer, sources, use_cache=use_cache, progress=progress)
    res = token_loss(model, prep.dataset, pad_token_id=pad_id(tokenizer), batch_size=batch_size, progress=progress, desc="held-out loss")
    return HeldoutResult(res, prep.report.to_dict(), [s.path for s in sources])
