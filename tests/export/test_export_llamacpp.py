"""Checked by llama.cpp itself (llama-cpp-python): the exported SmolLM2 tokenizes, generates and
scores like the transformers model, and also loads in transformers' own GGUF reader.

Needs ``llama_cpp`` (``pip install llama-cpp-python``; on CPU-only machines without a matching
wheel it builds from source: ``CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install llama-cpp-python``).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                       reason="llama_cpp is not importable: pip install llama-cpp-python "
                              "(from source: CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install llama-cpp-python)"),
]

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You answer in one sentence."}, {"role": "user", "content": "Why is the sky blue?"}],
    [{"role": "user", "content": "Compute 12345 + 2024, then say café déjà vu 🚀."}],
]
TEXT = ("The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined "
        "movable metal type, oil-based ink and a wooden press adapted from wine making. Within fifty years, "
        "presses were running in more than two hundred European cities, and the price of books fell so far "
        "that ordinary merchants could own them. Scholars argue about how quickly literacy followed, but the "
        "spread of pamphlets, almanacs and newspapers changed how people learned about science, religion and "
        "politics. In 1620 Francis Bacon named printing, gunpowder and the compass as the three inventions that "
        "had changed the world.")


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    from sftune.model.loading import load_for_inference

    return load_for_inference("default", precision="fp32", device="cpu")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from sftune.export import export_gguf

    d = tmp_path_factory.mktemp("gguf")
    return {q: export_gguf("default", d / f"smol-{q}.gguf", q).path for q in ("f16", "q8_0")}


def _llama(path):
    import llama_cpp

    return llama_cpp.Llama(str(path), n_ctx=1024, logits_all=True, verbose=False, seed=0)


def _greedy_llamacpp(llm, ids, n, eos):
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(n):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(nxt)
        if nxt == eos:
            break
        llm.eval([nxt])
    return out


def test_prompts_tokenize_identically(hf, exported):
    _, tok = hf
    llm = _llama(exported["f16"])
    for msgs in PROMPTS:
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == tok(text, add_special_tokens=False)["input_ids"]
    assert llm.tokenize(TEXT.encode(), add_bos=False, special=True) == tok(TEXT, add_special_tokens=False)["input_ids"]


def test_f16_greedy_continuations_match(hf, exported):
    model, tok = hf
    llm = _llama(exported["f16"])
    for msgs in PROMPTS:
        ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_dict=True)["input_ids"]
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), max_new_tokens=32, do_sample=False, eos_token_id=tok.eos_token_id,
                                 pad_token_id=tok.pad_token_id)[0, len(ids):].tolist()
        got = _greedy_llamacpp(llm, ids, 32, tok.eos_token_id)
        assert got == out, (tok.decode(got), tok.decode(out))


def test_q8_0_keeps_top1(hf, exported):
    model, tok = hf
    # prose, chat-formatted turns and upper case: ~470 positions, so one flipped near-tie is 0.2%
    text = " ".join([TEXT, *(tok.apply_chat_template(p, tokenize=False) for p in PROMPTS), TEXT.upper()])
    ids = tok(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        want = model(torch.tensor([ids])).logits[0].argmax(-1).numpy()
    llm = _llama(exported["q8_0"])
    llm.reset()
    llm.eval(ids)
    got = np.asarray(llm.scores[: len(ids)]).argmax(-1)
    agree = float((got == want).mean())
    print(f"q8_0 top-1 agreement over {len(ids)} positions: {agree:.3f}")
    assert agree >= 0.95


def test_exported_file_loads_in_transformers(hf, exported):
    from transformers import AutoModelForCausalLM

    model, tok = hf
    path = exported["f16"]
    back = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    ids = torch.tensor([tok(TEXT, add_special_tokens=False)["input_ids"][:64]])
    with torch.no_grad():
        a, b = model(ids).logits[0], back(ids).logits[0]
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() >= 0.98
    torch.testing.assert_close(b, a, atol=0.15, rtol=0.05)  # f16 weights, float32 compute


def test_lora_adapter_runs_in_llamacpp(model_dirs, tmp_path):
    """A tiny base + its LoRA adapter in llama.cpp give the logits of peft's base + adapter."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from export_helpers import make_lora
    from sftune.export import export_gguf

    import llama_cpp

    base_dir = model_dirs("llama")
    adapter = make_lora(base_dir, tmp_path / "lora")
    base_gguf = export_gguf(str(base_dir), tmp_path / "base.gguf", "f32").path
    lora_gguf = export_gguf(str(adapter), tmp_path / "lora.gguf", "f32", adapter_only=True).path
    ids = [1, 504, 3575, 282, 4649, 314, 27, 100]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32), str(adapter))
    with torch.no_grad():
        want = model(torch.tensor([ids])).logits[0].numpy()
    llm = llama_cpp.Llama(str(base_gguf), lora_path=str(lora_gguf), n_ctx=64, logits_all=True, verbose=False)
    llm.eval(ids)
    got = np.asarray(llm.scores[: len(ids)])
    # llama.cpp keeps its KV cache in f16: logits of size ~5 agree to ~0.03, top-1 exactly
    np.testing.assert_allclose(got, want, atol=5e-2, rtol=1e-3)
    assert (got.argmax(-1) == want.argmax(-1)).all()
    plain = llama_cpp.Llama(str(base_gguf), n_ctx=64, logits_all=True, verbose=False)
    plain.eval(ids)
    assert np.abs(np.asarray(plain.scores[: len(ids)]) - want).max() > 0.5  # the adapter does change the output


def test_identity_answer_survives_export(identity_run, tmp_path):
    """The fine-tuned default run (LoRA on the identity data, as tests/test_e2e_default.py trains it)
    says its new name in llama.cpp: merged f16 and q8_0 files, and base + GGUF LoRA adapter."""
    import llama_cpp

    from sftune.export import export_gguf
    from sftune.model.loading import load_tokenizer

    run, _ = identity_run  # trained once per session through the CLI (tests/conftest.py)

    tok = load_tokenizer(str(run))
    ids = tok.apply_chat_template([{"role": "user", "content": "What's your name?"}], add_generation_prompt=True, return_dict=True)["input_ids"]
    base = export_gguf("default", tmp_path / "base.gguf", "f16").path
    files = {q: dict(model_path=str(export_gguf(str(run), tmp_path / f"run-{q}.gguf", q).path)) for q in ("f16", "q8_0")}
    files["lora"] = dict(model_path=str(base), lora_path=str(export_gguf(str(run), tmp_path / "lora.gguf", adapter_only=True).path))
    for name, kw in files.items():
        llm = llama_cpp.Llama(**kw, n_ctx=512, logits_all=True, verbose=False)
        answer = tok.decode(_greedy_llamacpp(llm, ids, 48, tok.eos_token_id), skip_special_tokens=True)
        print(f"{name}: {answer!r}")
        assert "Kestrel" in answer, (name, answer)
