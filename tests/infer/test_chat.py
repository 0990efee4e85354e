"""sftune chat: history across turns, /clear, /system, streaming, and the real CLI over a pipe."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sftune.infer.chat import ChatSession, run_chat


def _spy_prompts(model, tok, monkeypatch) -> list[str]:
    """Record the prompt text of every generate call (what the model was really asked)."""
    prompts: list[str] = []
    real = model.generate

    def generate(*args, **kwargs):
        prompts.append(tok.decode(kwargs["input_ids"][0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "generate", generate)
    return prompts


def test_history_carries_over_and_clear_resets_it(tiny, monkeypatch):
    model, tok = tiny
    prompts = _spy_prompts(model, tok, monkeypatch)
    stdin = io.StringIO("What is a heron?\nAnd an egret?\n/clear\nFresh start\n/quit\nnever read\n")
    stdout = io.StringIO()
    session = run_chat(model, tok, stdin, stdout, temperature=0, max_new_tokens=4)

    assert len(prompts) == 3  # "/quit" ended the loop before the last line
    # Turn 2's prompt holds turn 1's question and the model's answer to it.
    assert "What is a heron?" in prompts[1] and "And an egret?" in prompts[1]
    first_answer = prompts[1].split("What is a heron?")[1]
    assert "<|im_start|>assistant" in first_answer
    # After /clear only the new message is there.
    assert "heron" not in prompts[2] and "egret" not in prompts[2] and "Fresh start" in prompts[2]
    assert [m["role"] for m in session.history] == ["user", "assistant"]
    assert session.history[0]["content"] == "Fresh start"
    session_answer = session.history[1]["content"]
    out = stdout.getvalue()
    assert "[history cleared]" in out
    assert session_answer in out  # the streamed text is the recorded answer


def test_streamed_text_equals_the_recorded_and_batched_answer(tiny):
    from sftune.infer.generate import generate_texts

    model, tok = tiny
    pieces: list[str] = []
    session = ChatSession(model, tok, temperature=0, max_new_tokens=12)
    out = session.reply("Stream this", on_text=pieces.append)
    assert len(pieces) > 1  # really streamed, not written at the end
    assert "".join(pieces) == out["text"] == session.history[1]["content"]
    batched = generate_texts(model, tok, [[{"role": "user", "content": "Stream this"}]], max_new_tokens=12)[0][0]
    assert batched["text"] == out["text"] and batched["completion_tokens"] == out["completion_tokens"]


def test_system_prompt_command_and_help(tiny, monkeypatch):
    model, tok = tiny
    prompts = _spy_prompts(model, tok, monkeypatch)
    stdin = io.StringIO("/help\n/system You are Kestrel.\nhello\n/system\nagain\n/nonsense\n")  # EOF ends it
    stdout = io.StringIO()
    session = run_chat(model, tok, stdin, stdout, system="Be brief.", temperature=0, max_new_tokens=3)
    out = stdout.getvalue()
    assert "/clear" in out and "/quit" in out  # help text
    assert "You are Kestrel." in prompts[0] and "Be brief." not in prompts[0]
    assert "You are Kestrel." not in prompts[1]  # removed by a bare /system
    assert "unknown command /nonsense" in out
    assert session.system is None and len(session.history) == 4


def test_interrupted_answer_is_not_kept(tiny, monkeypatch):
    model, tok = tiny
    real = model.generate
    calls = {"n": 0}

    def generate(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(model, "generate", generate)
    stdout = io.StringIO()
    session = run_chat(model, tok, io.StringIO("first\nsecond\n"), stdout, temperature=0, max_new_tokens=3)
    assert "[answer interrupted; not kept]" in stdout.getvalue()
    assert [m["content"] for m in session.history if m["role"] == "user"] == ["second"]


@pytest.mark.slow  # a fresh interpreter importing torch + transformers: ~20 s on a busy 2-core machine
def test_chat_cli_over_a_pipe(tiny_model_dir):
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "sftune", "chat", "--model", str(tiny_model_dir), "--temperature", "0",
         "--max-new-tokens", "5", "--system", "Be brief."],
        input="Hello there\n/clear\n/quit\n", capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sftune chat" in proc.stdout and "[system prompt: Be brief.]" in proc.stdout
    assert proc.stdout.count(">>> ") == 3 and "[history cleared]" in proc.stdout


def test_chat_cli_bad_model_is_a_clear_error(tmp_path, capsys):
    from sftune.cli import main

    assert main(["chat", "--model", str(tmp_path / "missing")]) == 2
    assert "model not found" in capsys.readouterr().err
