"""Chat answers stream (several partial texts) and equal what the library generates in one go."""

from __future__ import annotations

import doctest

import pytest

from sftune.ui import chat


def test_doctests_run():
    assert doctest.testmod(chat).failed == 0


def test_messages_carry_history_and_system():
    hist = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}, {"role": "assistant", "content": "Hello"}]
    assert chat.messages(hist, "Who?", None) == [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Who?"}]


def test_two_models_stream_side_by_side(tiny_model_dir, tmp_path):
    import shutil

    from sftune.infer.generate import encode_prompt, stream_generate
    from sftune.model.loading import load_for_inference

    other = shutil.copytree(tiny_model_dir, tmp_path / "other")
    msgs = [{"role": "user", "content": "Who are you?"}]
    sampling = dict(temperature=0.0, max_new_tokens=12)
    updates = list(chat.stream_answers([str(tiny_model_dir), str(other)], [msgs, msgs], sampling))
    assert len(updates) > 3  # streamed: one update per delta, not one at the end
    final = updates[-1]
    model, tok = load_for_inference(str(tiny_model_dir))
    whole = stream_generate(model, tok, encode_prompt(tok, msgs), **sampling)["text"]
    assert final == [whole, whole]  # same weights, greedy: the same answer, in both panes
    assert all(u[0] == final[0][: len(u[0])] for u in updates)  # each update extends the last


def test_load_error_reaches_the_caller(tmp_path):
    with pytest.raises(Exception):
        list(chat.stream_answers([str(tmp_path / "missing")], [[{"role": "user", "content": "x"}]], {}))


def test_base_of_reads_the_run_config(tmp_path):
    (tmp_path / "sftune_config.yaml").write_text("model: /models/base\nmax_steps: 2\n")
    assert chat.base_of(str(tmp_path)) == "/models/base"
    assert chat.base_of(str(tmp_path / "none")) is None
