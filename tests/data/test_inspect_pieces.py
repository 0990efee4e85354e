"""Token pieces for the mask view: characters split over byte-level tokens are shown whole."""

from sftune.data.inspect import token_pieces


def test_cjk_and_emoji_pieces_join_to_the_text_and_align_with_the_ids(smol_tokenizer):
    text = "深圳现在阴天 🌧 34°C"
    ids = smol_tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = token_pieces(smol_tokenizer, ids)
    assert len(pieces) == len(ids)
    assert "".join(pieces) == smol_tokenizer.decode(ids)
    assert not any("\ufffd" in p for p in pieces)
    assert "深" in "".join(pieces) and "🌧" in "".join(pieces)
