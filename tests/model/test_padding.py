"""The pad id: the tokenizer's pad token, else the first end-of-turn id, else 0."""

from __future__ import annotations

from sftune.model.padding import ensure_pad_token, pad_id


class Tok:
    def __init__(self, pad=None, eos="</s>", unk=None):
        self.pad_token, self.eos_token, self.unk_token = pad, eos, unk

    @property
    def pad_token_id(self):
        return {None: None, "</s>": 2, "<unk>": 0, "<pad>": 9}[self.pad_token]


def test_pad_id_fallbacks():
    assert pad_id(Tok(pad="<pad>"), [2]) == 9
    assert pad_id(Tok(), [7, 2]) == 7
    assert pad_id(Tok()) == 0


def test_ensure_pad_token_prefers_eos_then_unk():
    t = Tok()
    ensure_pad_token(t)
    assert t.pad_token == "</s>" and t.eos_token == "</s>" and pad_id(t) == 2
    t = Tok(eos=None, unk="<unk>")
    ensure_pad_token(t)
    assert t.pad_token == "<unk>"
