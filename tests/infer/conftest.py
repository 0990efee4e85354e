"""Fixtures for the inference tests: the tiny model loaded once, and a LoRA adapter that is not a no-op."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def varied_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with its matrices redrawn at std 0.3, saved as a model folder.

    At the default init (std 0.02) the tiny model answers every prompt with newlines, which
    would let tests of ordering, streaming, stop strings and concurrency pass by accident;
    with larger weights greedy answers are different words for different prompts.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    out = tmp_path_factory.mktemp("varied_model")
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(tiny_model_dir)).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def tiny(varied_model_dir):
    """(model, tokenizer) of the varied tiny Llama, as ``load_for_inference`` gives them."""
    from sftune.model.loading import load_for_inference

    return load_for_inference(str(varied_model_dir), device="cpu")


@pytest.fixture(scope="session")
def tiny_lora_dir(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter folder on the tiny model, laid out like `sftune train --method lora` writes it.

    peft initialises B to zeros (the adapter starts as a no-op); B is randomised here so that
    merging has something to get wrong.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    out = tmp_path_factory.mktemp("tiny_lora")
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    torch.manual_seed(1)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=0.0))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    model.save_pretrained(str(out))
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    # A template marker only the adapter folder has, so tests can tell which template was saved.
    tok.chat_template = tok.chat_template + "{# sftune-test-adapter #}"
    tok.save_pretrained(str(out))
    GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, max_new_tokens=7).save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def run_app():
    """``run_app(app)``: a context manager serving ``app`` with uvicorn on a free loopback port,
    yielding the OpenAI base URL, shut down on exit (the server tests share it)."""
    import contextlib
    import socket
    import threading
    import time

    @contextlib.contextmanager
    def run(app):
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        deadline = time.time() + 30
        while not srv.started:
            assert time.time() < deadline, "server did not start"
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            srv.should_exit = True
            thread.join(10)

    return run
