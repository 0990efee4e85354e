"""The pad token: giving a tokenizer one, and the id a batch is padded with.

Padding never carries meaning in sftune: the collators label it -100 by position and the
attention mask hides it, so the pad id only has to be a valid token id. What matters is that it
is chosen the same way everywhere (training, scoring, generation).
"""

from __future__ import annotations

from collections.abc import Sequence


def ensure_pad_token(tokenizer) -> None:
    """Give the tokenizer a pad token without changing what EOS means.

    Using EOS as pad is safe because the collator labels padding -100 by position (from the
    attention mask), never by token id, so trained EOS tokens stay trained.
    """
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        elif tokenizer.unk_token is not None:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            tokenizer.add_special_tokens({"pad_token": "<|pad|>"})


def pad_id(tokenizer, eos_ids: Sequence[int] = ()) -> int:
    """The id to pad with: the tokenizer's pad token, else the first of ``eos_ids``, else 0.

    >>> class Tok: pad_token_id = None
    >>> pad_id(Tok()), pad_id(Tok(), [2, 7])
    (0, 2)
    >>> Tok.pad_token_id = 5; pad_id(Tok(), [2])
    5
    """
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return eos_ids[0] if eos_ids else 0
