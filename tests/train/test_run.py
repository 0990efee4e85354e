"""End-to-end training on tiny random models: outputs, methods, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sftune.config import SFTConfig
from sftune.train.callbacks import COMPLETE_MARKER, latest_complete_checkpoint

ROWS = [
    {"messages": [{"role": "user", "content": f"What is {a} plus {b}?"}, {"role": "assistant", "content": f"{a} plus {b} is {a + b}."}]}
    for a in range(6) for b in range(4)
]


@pytest.fixture()
def data_file(tmp_path) -> Path:
    f = tmp_path / "train.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    return f


def _cfg(model_dir, data_file, out, **kw) -> SFTConfig:
    base = dict(
        model=str(model_dir), data=[str(data_file)], output_dir=str(out), max_steps=4, per_device_train_batch_size=4,
        learning_rate=1e-2, logging_steps=1, save_steps=100, report_to=["none"], precision="fp32",
        eval_questions=["What is 2 plus 2?"], cache_dir=str(out.parent / "cache"), warmup_ratio=0.0,
    )
    base.update(kw)
    return SFTConfig(**base)


def test_full_finetune_writes_a_plain_transformers_folder(tiny_model_dir, data_file, tmp_path):
    from sftune.train.run import train
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "run"
    res = train(_cfg(tiny_model_dir, data_file, out, method="full", report_to=["tensorboard"]), progress=False)
    assert list(out.glob("runs/*/events.out.tfevents.*")), "no TensorBoard event file"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "sftune_config.yaml", "metrics.jsonl", "loss_curve.png", "run_info.json", "before_after.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.bin"))
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    model = AutoModelForCausalLM.from_pretrained(out)
    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    changed = [n for (n, p), (_, q) in zip(model.named_parameters(), before.named_parameters()) if not torch.equal(p, q)]
    assert changed, "full fine-tuning changed no weights"
    assert res.metrics["train_loss"] > 0 and len(res.after) == 1
    losses = [json.loads(l)["loss"] for l in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in l]
    assert len(losses) == 4


def test_replay_mixture_is_realised_and_reported(tiny_model_dir, data_file, tmp_path):
    from sftune.train.run import train

    replay = tmp_path / "replay.jsonl"
    replay.write_text("\n".join(json.dumps({"text": f"General fact number {i}."}) for i in range(5)) + "\n")
    out = tmp_path / "run"
    cfg = _cfg(tiny_model_dir, data_file, out, method="lora", max_steps=2, data=[str(data_file), {"path": str(replay), "share": 0.2}])
    train(cfg, progress=False, compare=False)
    mixture = json.loads((out / "run_info.json").read_text())["data"]["mixture"]
    # 24 instruction rows are 80%, so 30 rows in all and 6 replay rows (5 rows, one used twice)
    assert [s["rows_out"] for s in mixture["sources"]] == [24, 6]
    assert [s["share"] for s in mixture["sources"]] == [0.8, 0.2]


def test_lora_writes_adapter_loadable_with_peft(tiny_model_dir, data_file, tmp_path):
    from peft import AutoPeftModelForCausalLM
    from sftune.train.run import train

    out = tmp_path / "run"
    train(_cfg(tiny_model_dir, data_file, out, method="lora", lora_r=4), progress=False)
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    model = AutoPeftModelForCausalLM.from_pretrained(out)
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # B starts at zero: training moved it


def test_latest_complete_checkpoint_skips_incomplete(tmp_path):
    for step, done in ((2, True), (4, True), (6, False)):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        if done:
            (d / COMPLETE_MARKER).write_text("{}")
    assert latest_complete_checkpoint(tmp_path).name == "checkpoint-4"
    assert latest_complete_checkpoint(tmp_path / "missing") is None


RUNNER = """
import sys, time
from transformers import TrainerCallback
from sftune.config import load_config
from sftune.train import run
cfg = load_config(sys.argv[1])
slow = sys.argv[2] == "slow"
class Slow(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if slow and state.global_step >= 4:
            time.sleep(5)  # give the parent time to SIGKILL us after checkpoint-4 is complete
orig = run.SFTTrainer if hasattr(run, "SFTTrainer") else None
import sftune.train.trainer as T
class Patched(T.SFTTrainer):
    def __init__(self, *a, callbacks=None, **k):
        super().__init__(*a, callbacks=(callbacks or []) + [Slow()], **k)
T.SFTTrainer = Patched
run.train(cfg, progress=False, compare=False)
"""


def _write_cfg(cfg: SFTConfig, path: Path) -> Path:
    from sftune.config import save_config

    save_config(cfg, path)
    return path


def _final_loss(out: Path) -> float:
    return json.loads((out / "run_info.json").read_text())["metrics"]["train_loss"]


def _last_logged_loss(out: Path) -> float:
    entries = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    return [e for e in entries if "loss" in e][-1]["loss"]


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted(tiny_model_dir, data_file, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    common = dict(method="lora", lora_r=4, max_steps=8, save_steps=2, save_total_limit=3, lora_dropout=0.1)

    ref_out = tmp_path / "ref"
    ref_cfg = _write_cfg(_cfg(tiny_model_dir, data_file, ref_out, **common), tmp_path / "ref.yaml")
    subprocess.run([sys.executable, str(runner), str(ref_cfg), "fast"], check=True, env=env, timeout=300)

    out = tmp_path / "killed"
    cfg_path = _write_cfg(_cfg(tiny_model_dir, data_file, out, **common), tmp_path / "k.yaml")
    proc = subprocess.Popen([sys.executable, str(runner), str(cfg_path), "slow"], env=env)
    deadline = time.time() + 240
    while time.time() < deadline and not (out / "checkpoint-4" / COMPLETE_MARKER).is_file():
        time.sleep(0.2)
    assert (out / "checkpoint-4" / COMPLETE_MARKER).is_file()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (out / "run_info.json").exists()
    # a checkpoint that was being written when the process died: no marker, must be ignored
    (out / "checkpoint-6").mkdir(exist_ok=True)
    (out / "checkpoint-6" / "trainer_state.json").write_text("{partial")

    resumed = _cfg(tiny_model_dir, data_file, out, resume="latest", **common)
    _write_cfg(resumed, cfg_path)
    subprocess.run([sys.executable, str(runner), str(cfg_path), "fast"], check=True, env=env, timeout=300)
    # Same data order, RNG state (LoRA dropout) and schedule: float32 on one CPU thread layout,
    # so the last logged losses agree to float rounding of the restored state.
    assert _last_logged_loss(out) == pytest.approx(_last_logged_loss(ref_out), rel=1e-4, abs=1e-5)


def test_bf16_loss_curve_tracks_fp32(tiny_model_dir, data_file, tmp_path):
    """Autocast bf16 with float32 master weights: same data and seed, losses within 2% step by step."""
    from sftune.train.run import train

    curves = {}
    for prec in ("fp32", "bf16"):
        out = tmp_path / prec
        train(_cfg(tiny_model_dir, data_file, out, method="full", precision=prec, max_steps=6, learning_rate=3e-3), progress=False, compare=False)
        curves[prec] = [json.loads(l)["loss"] for l in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in l]
        assert json.loads((out / "run_info.json").read_text())["precision"] == prec
    assert len(curves["fp32"]) == len(curves["bf16"]) == 6
    assert curves["bf16"] == pytest.approx(curves["fp32"], rel=0.02)
    assert curves["bf16"] != curves["fp32"]  # autocast was really on
    assert curves["fp32"][-1] < curves["fp32"][0]  # it learned something, so tracking is not trivial


@pytest.mark.parametrize(
    "method, extra",
    [
        ("dora", {"lora_r": 2}),
        ("ia3", {}),
        ("prompt_tuning", {"num_virtual_tokens": 4}),
        ("prefix_tuning", {"num_virtual_tokens": 4}),
        ("p_tuning", {"num_virtual_tokens": 4}),
        ("selective", {"trainable_modules": [r"layers\.1\.self_attn\.(q|v)_proj"]}),
    ],
)
def test_method_changes_its_trainable_weights_and_only_those(tiny_model_dir, data_file, tmp_path, method, extra):
    from transformers import AutoModelForCausalLM, set_seed

    from sftune.model.methods import apply_method
    from sftune.train.run import train

    cfg = _cfg(tiny_model_dir, data_file, tmp_path / "run", method=method, learning_rate=5e-2, **extra)
    # The starting point: train() seeds before initialising adapters, so the same seed rebuilds it.
    set_seed(cfg.seed)
    start = {n: p.detach().clone() for n, p in apply_method(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg).named_parameters()}
    res = train(cfg, progress=False, compare=False)
    trainable = {n: p.detach() for n, p in res.model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach() for n, p in res.model.named_parameters() if not p.requires_grad}
    assert trainable and frozen and set(trainable) | set(frozen) == set(start)
    unchanged = [n for n, p in trainable.items() if torch.equal(p, start[n])]
    assert not unchanged, f"{method}: trainable tensors left unchanged: {unchanged[:3]}"
    moved = [n for n, p in frozen.items() if not torch.equal(p, start[n])]
    assert not moved, f"{method}: frozen weights changed: {moved[:3]}"
    out = Path(cfg.output_dir)
    if method == "selective":
        assert sorted(trainable) == ["model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.v_proj.weight"]
        assert (out / "model.safetensors").is_file()
    else:
        assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()


def test_packed_rows_run_one_at_a_time_on_cpu_with_the_same_update(tiny_model_dir, data_file, tmp_path):
    """With packing, CPU runs pass one packed row at a time and accumulate the step's rows: the
    loss curve and the trained weights equal those of the whole batch in one pass."""
    from sftune.train.run import train
    from transformers import AutoModelForCausalLM

    results = {}
    for micro in (1, 2):
        out = tmp_path / f"micro{micro}"
        cfg = _cfg(tiny_model_dir, data_file, out, method="full", packing=True, max_length=64,
                   per_device_train_batch_size=2, packed_micro_batch=micro if micro == 2 else None)
        train(cfg, progress=False, compare=False)
        args = json.loads((out / "run_info.json").read_text())
        losses = [json.loads(l)["loss"] for l in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in l]
        results[micro] = (losses, AutoModelForCausalLM.from_pretrained(out), args)
    (l1, m1, info1), (l2, m2, _) = results[1], results[2]
    assert info1["micro_batch"] == 1 and info1["gradient_accumulation_steps"] == 2
    assert len(l1) == len(l2) == 4
    assert l1 == pytest.approx(l2, rel=1e-4)
    for (n, p), (_, q) in zip(m1.named_parameters(), m2.named_parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=n)


def test_packed_micro_batch_must_divide_the_batch(tiny_model_dir, data_file, tmp_path):
    from sftune.config import ConfigError
    from sftune.train.run import micro_batching

    cfg = _cfg(tiny_model_dir, data_file, tmp_path / "x", packing=True, per_device_train_batch_size=6, packed_micro_batch=4)
    with pytest.raises(ConfigError, match="1, 2, 3, 6"):
        micro_batching(cfg, cuda=False)


def test_data_stage_resolves_the_template_once_and_packs_after_mixing(tiny_model_dir, data_file, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    from sftune.data import templates
    from sftune.data.templates import BUILTIN_TEMPLATES
    from sftune.train import run

    calls = []
    real = templates.resolve_template
    monkeypatch.setattr(templates, "resolve_template", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    monkeypatch.setattr("sftune.data.prepare.resolve_template", templates.resolve_template)
    replay = tmp_path / "replay.jsonl"
    replay.write_text("\n".join(json.dumps({"text": f"General fact number {i}."}) for i in range(5)) + "\n")
    cfg = _cfg(tiny_model_dir, data_file, tmp_path / "run", template="chatml", packing=True, max_length=64,
               data=[str(data_file), {"path": str(replay), "share": 0.2}])
    data = run.load_datasets(cfg, AutoTokenizer.from_pretrained(str(tiny_model_dir)))
    assert calls == ["chatml"]  # two sources, one resolution
    assert data.template == BUILTIN_TEMPLATES["chatml"]
    assert data.train.column_names == ["input_ids", "labels", "seq_lengths"]
    # the 30 mixed samples (24 + 6 replay rows) are all in the packed rows
    assert data.info["packing"]["samples"] == sum(len(x) for x in data.train["seq_lengths"]) == 30
    assert data.info["packing"]["rows"] == len(data.train)
