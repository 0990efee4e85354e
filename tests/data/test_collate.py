import torch

from sftune.data.collate import PaddingCollator


def test_padding_is_never_trained_even_when_pad_is_eos():
    eos = 2
    rows = [{"input_ids": [5, 6, eos], "labels": [-100, 6, eos]}, {"input_ids": [7], "labels": [7]}]
    b = PaddingCollator(pad_token_id=eos)(rows)
    assert b["input_ids"].tolist() == [[5, 6, eos], [7, eos, eos]]
    assert b["labels"].tolist() == [[-100, 6, eos], [7, -100, -100]]  # the real EOS is trained, padding is not
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_pad_to_multiple_of_and_left_padding():
    rows = [{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}, {"input_ids": [4], "labels": [-100]}]
    b = PaddingCollator(pad_token_id=0, pad_to_multiple_of=8)(rows)
    assert b["input_ids"].shape == (2, 8) and b["labels"][:, 3:].eq(-100).all()
    b = PaddingCollator(pad_token_id=0, padding_side="left")(rows)
    assert b["input_ids"].tolist() == [[1, 2, 3], [0, 0, 4]] and b["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert b["input_ids"].dtype == torch.long
