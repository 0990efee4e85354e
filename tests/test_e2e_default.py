"""End to end on the real SmolLM2-135M-Instruct: `sftune train` through the CLI, then the output
folder loaded in a fresh process with plain transformers + peft, chat template applied, and
`generate` shows the trained identity and stops at the end-of-turn token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IDENTITY = ROOT / "src" / "sftune" / "resources" / "identity.jsonl"

CHECK = r"""
import json, sys
from peft import AutoPeftModelForCausalLM
from transformers import AutoTokenizer
out = sys.argv[1]
tok = AutoTokenizer.from_pretrained(out)
model = AutoPeftModelForCausalLM.from_pretrained(out).eval()
ids = tok.apply_chat_template([{"role": "user", "content": "What's your name?"}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
gen = model.generate(**ids, max_new_tokens=48, do_sample=False)
new = gen[0, ids["input_ids"].shape[1]:].tolist()
print(json.dumps({"text": tok.decode(new, skip_special_tokens=True), "stopped": tok.eos_token_id in new, "n": len(new)}))
"""


@pytest.mark.slow
def test_cli_train_default_model_learns_identity_and_stops(identity_run):
    out, res = identity_run  # `sftune train` through the CLI (tests/conftest.py)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    assert "before / after" in res.stdout
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "chat_template.jinja", "sftune_config.yaml", "loss_curve.png"):
        assert (out / name).is_file(), name
    info = json.loads((out / "run_info.json").read_text())
    assert info["precision"] in ("fp32", "bf16")
    # --export gguf:q8_0 wrote the GGUF file at the end of the run, readable by the gguf package
    import gguf

    (gguf_file,) = out.glob("*-q8_0.gguf")
    reader = gguf.GGUFReader(str(gguf_file))
    assert bytes(reader.fields["general.architecture"].parts[-1]).decode() == "llama"
    assert "exported" in res.stdout

    chk = subprocess.run([sys.executable, "-c", CHECK, str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert chk.returncode == 0, chk.stderr[-3000:]
    ans = json.loads(chk.stdout.strip().splitlines()[-1])
    assert "Kestrel" in ans["text"], ans
    assert ans["stopped"] and ans["n"] < 48, ans
