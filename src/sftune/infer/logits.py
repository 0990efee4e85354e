"""Logits processors for the sampling parameters transformers has no built-in for.

OpenAI's ``frequency_penalty`` and ``presence_penalty`` count tokens of the *answer* only
(``repetition_penalty`` also counts the prompt), and ``logit_bias`` adds a fixed value to
chosen token ids. Both are applied before temperature/top-p, in greedy decoding too::

    logits[t] -= count[t] * frequency_penalty + (count[t] > 0) * presence_penalty
    logits[t] += logit_bias[t]

>>> import torch
>>> p = AnswerPenalty(frequency=0.5, presence=1.0)
>>> prompt = torch.tensor([[7, 7]])               # the prompt's tokens are not counted
>>> p(prompt, torch.zeros(1, 4)).tolist()         # first step: nothing generated yet
[[0.0, 0.0, 0.0, 0.0]]
>>> for ids in ([7, 7, 1], [7, 7, 1, 1], [7, 7, 1, 1, 3]):  # one token per step, as generate calls it
...     out = p(torch.tensor([ids]), torch.zeros(1, 4))
>>> out.tolist()                                  # answer so far: 1, 1, 3
[[0.0, -2.0, 0.0, -1.5]]
"""

from __future__ import annotations

import torch


class AnswerPenalty:
    """Frequency and presence penalties over the tokens generated so far (not the prompt).

    One instance serves several ``generate`` calls: a call is recognised as new when the
    sequence did not grow by exactly one token or its prompt part changed, and the prompt
    length is then taken from that first call's input.
    """

    def __init__(self, frequency: float = 0.0, presence: float = 0.0):
        self.frequency, self.presence = float(frequency), float(presence)
        self._prompt: torch.Tensor | None = None  # (batch, prompt_len) input of the current call
        self._last = -1

    def _start(self, input_ids: torch.Tensor) -> int:
        p = self._prompt
        same_call = (
            p is not None and input_ids.shape[1] == self._last + 1 and input_ids.shape[0] == p.shape[0]
            and torch.equal(input_ids[:, : p.shape[1]], p)
        )
        if not same_call:
            self._prompt = input_ids.clone()
        self._last = input_ids.shape[1]
        return self._prompt.shape[1]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        answer = input_ids[:, self._start(input_ids):]  # (batch, generated so far)
        if answer.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores)  # (batch, vocab)
        counts.scatter_add_(1, answer, torch.ones_like(answer, dtype=scores.dtype))
        return scores - counts * self.frequency - (counts > 0).to(scores.dtype) * self.presence


class LogitBias:
    """Adds ``bias[token_id]`` to that token's logit at every step (+100 forces it, -100 bans it).

    >>> import torch
    >>> LogitBias({2: 100.0, 0: -100.0})(torch.tensor([[5]]), torch.zeros(1, 3)).tolist()
    [[-100.0, 0.0, 100.0]]
    """

    def __init__(self, bias: dict[int, float]):
        self.ids = torch.tensor(list(bias), dtype=torch.long)
        self.values = torch.tensor(list(bias.values()), dtype=torch.float32)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.clone()
        scores[:, self.ids.to(scores.device)] += self.values.to(scores.device, scores.dtype)
        return scores


def sampling_processors(*, frequency_penalty: float = 0.0, presence_penalty: float = 0.0,
                        logit_bias: dict[int, float] | None = None) -> list:
    """The processors these settings need (none when they are all off)."""
    out: list = []
    if frequency_penalty or presence_penalty:
        out.append(AnswerPenalty(frequency_penalty, presence_penalty))
    if logit_bias:
        out.append(LogitBias(logit_bias))
    return out
