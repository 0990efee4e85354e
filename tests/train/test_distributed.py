"""Several processes: FSDP/DDP over two CPU processes (gloo, torchrun) equal one process with the same global batch.

The multi-process runs are slow (each torchrun start imports torch twice); they use a 2-layer
model of width 32 and 3 steps. A one-process run with twice the per-device batch is the
reference: same rows per optimizer step, same loss normalisation (trained tokens of the whole
step), so per-step losses and final weights agree to float32 summation order.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sftune.train.distributed import distributed_training_args, threads_per_process

ROOT = Path(__file__).resolve().parents[2]
ROWS = [
    {"messages": [{"role": "user", "content": f"Spell {w}"}, {"role": "assistant", "content": " ".join(w.upper())}]}
    for w in ["cat", "dog", "bird", "fish", "horse", "mouse", "lion", "tiger", "bear", "wolf", "frog", "duck",
              "owl", "crow", "seal", "goat"]
]
RTOL = 1e-5  # float32 losses; only the order of the sums differs between one and two processes


# --- fast: the pieces ---------------------------------------------------------------------------


def test_threads_per_process():
    assert threads_per_process(16, 4, {}) == 4
    assert threads_per_process(16, 4, {"OMP_NUM_THREADS": "1", "TORCHELASTIC_RUN_ID": "abc"}) == 4  # torchrun's default
    assert threads_per_process(16, 4, {"OMP_NUM_THREADS": "1"}) is None  # the user's own 1
    assert threads_per_process(16, 4, {"OMP_NUM_THREADS": "6", "TORCHELASTIC_RUN_ID": "abc"}) is None
    assert threads_per_process(16, 4, {"SFTUNE_THREADS": "1", "TORCHELASTIC_RUN_ID": "abc", "OMP_NUM_THREADS": "1"}) == 1
    assert threads_per_process(3, 2, {}) == 1 and threads_per_process(1, 8, {}) == 1
    assert threads_per_process(16, 1, {}) is None  # one process: torch's own default


def test_fsdp_in_one_process_is_refused_before_loading_anything(tmp_path, monkeypatch):
    from sftune.config import ConfigError, SFTConfig
    from sftune.train.run import train

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cfg = SFTConfig(model=str(tmp_path / "no-such-model"), distributed="fsdp", output_dir=str(tmp_path / "out"))
    with pytest.raises(ConfigError, match=r"one process[\s\S]*fix: launch with torchrun --nproc-per-node N"):
        train(cfg, progress=False)  # the model path does not exist: reaching the loader would fail differently
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["auto", "ddp", "fsdp", "deepspeed-zero2", "deepspeed-zero3"])
def test_distributed_choices_map_to_training_arguments(kind, tmp_path):
    from sftune.config import SFTConfig
    from sftune.train.run import training_arguments

    extra = distributed_training_args(kind)
    if kind.startswith("deepspeed"):
        assert extra["deepspeed"]["zero_optimization"]["stage"] == int(kind[-1])
        return  # building TrainingArguments with a DeepSpeed config needs deepspeed installed
    args = training_arguments(SFTConfig(model="m", data=["d.jsonl"], distributed=kind), tmp_path, {}, False)
    if kind == "fsdp":
        assert args.fsdp_plugin_args["fsdp_version"] == 2
        assert args.fsdp_plugin_args["reshard_after_forward"] is True  # full shard
    else:
        assert not args.fsdp_plugin_args


def test_training_args_win_over_distributed(tmp_path):
    from sftune.config import SFTConfig
    from sftune.train.run import training_arguments

    cfg = SFTConfig(model="m", data=["d.jsonl"], distributed="ddp", training_args={"ddp_find_unused_parameters": True})
    assert training_arguments(cfg, tmp_path, {}, False).ddp_find_unused_parameters is True


def test_chunked_forward_inside_the_model(tiny_model_dir):
    """The installed forward returns the chunked loss (no logits), equal to the model's own; generation is untouched."""
    from transformers import AutoModelForCausalLM

    from sftune.data.collate import PaddingCollator
    from sftune.train.loss import install_chunked_forward, remove_chunked_forward
    from test_packing import make_rows  # tests/train is on sys.path

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    batch = PaddingCollator(pad_token_id=0)(make_rows(4, seed=1))
    own = model(**batch, use_cache=False)
    assert install_chunked_forward(model) is None
    type_before = type(model)
    ours = model(**batch, num_items_in_batch=int((batch["labels"][:, 1:] != -100).sum()))
    assert ours.logits is None  # the chunked path ran: no [tokens, vocab] logits
    torch.testing.assert_close(ours.loss, own.loss, rtol=RTOL, atol=1e-6)
    assert type(model) is type_before  # save_pretrained, peft and the wrappers see the same class
    # without labels (generation) the class's own forward runs
    assert model(input_ids=batch["input_ids"][:1, :5]).logits.shape[-1] == model.config.vocab_size
    # a deep copy computes with its own weights, not the original's
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.get_output_embeddings().weight.mul_(2)
    assert twin(**batch).loss.item() != pytest.approx(model(**batch).loss.item())
    remove_chunked_forward(model)
    assert model(**batch).logits is not None


# --- slow: two processes ------------------------------------------------------------------------


def _write(tmp: Path) -> Path:
    data = tmp / "d.jsonl"
    if not data.exists():
        data.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    return data


def _train(tmp: Path, name: str, model_dir: Path, nproc: int, port: int = 29541, launcher: list | None = None,
           **cfg) -> tuple[Path, str]:
    """One ``sftune train`` run (through torchrun when nproc > 1, or ``launcher``); returns (output folder, log)."""
    out = tmp / name
    conf = {
        "model": str(model_dir), "data": [str(_write(tmp))], "max_steps": 3, "precision": "fp32", "report_to": "none",
        "logging_steps": 1, "cache_dir": str(tmp / "cache"), "learning_rate": 1e-2, "lr_scheduler_type": "constant",
        "warmup_ratio": 0.0, "lora_dropout": 0.0, "seed": 0, **cfg,
    }
    cfg_file = tmp / f"{name}.yaml"
    cfg_file.write_text(yaml.safe_dump(conf))
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1"}
    train = ["-m", "sftune", "train", str(cfg_file), "--output-dir", str(out), "--no-progress", "--no-compare"]
    if launcher:
        cmd = [*launcher, "--num_processes", str(nproc), "--main_process_port", str(port), *train]
    elif nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-port", str(port), *train]
    else:
        cmd = [sys.executable, *train]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, proc.stderr + proc.stdout


def _losses(out: Path) -> dict[int, float]:
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _assert_same_losses(a: dict, b: dict):
    assert a.keys() == b.keys() and len(a) == 3, (a, b)
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=RTOL), (step, a, b)


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    name = "adapter_model.safetensors" if (folder / "adapter_model.safetensors").exists() else "model.safetensors"
    return load_file(str(folder / name))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("dist")


@pytest.fixture(scope="module")
def one_process_full(runs, tiny_model_dir):
    """Reference: one process, 4 packed rows per step (CPU: 4 micro-batches of 1 row, accumulated)."""
    return _train(runs, "one_full", tiny_model_dir, 1, method="full", packing=True, max_length=64,
                  per_device_train_batch_size=4, save_steps=2)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["ddp", "fsdp"])
def test_two_processes_equal_one_full_packed_chunked(engine, one_process_full, runs, tiny_model_dir):
    ref, _ = one_process_full
    out, log = _train(runs, f"{engine}_full", tiny_model_dir, 2, port=29542 if engine == "ddp" else 29543,
                      method="full", packing=True, max_length=64, per_device_train_batch_size=2, save_steps=2,
                      distributed=engine)
    assert "chunked cross-entropy over trained tokens only" in log and "chunked loss not used" not in log
    assert json.loads((out / "run_info.json").read_text())["world_size"] == 2
    _assert_same_losses(_losses(out), _losses(ref))
    if engine == "fsdp":
        assert "switched it to its FSDP2 plugin" in log
        assert "still sharded after the decoder" not in log  # the head was gathered: the chunked path ran
        assert (out / "checkpoint-2" / "pytorch_model_fsdp_0").is_dir()  # checkpoints stay sharded
        # so the only save_pretrained is the final one, on rank 0 (0 when progress bars are off)
        assert log.count("Writing model shards: 100%") in (0, 1), log
    # the output is one plain transformers folder with the same weights as one process trained
    from transformers import AutoModelForCausalLM

    assert sorted(p.name for p in out.glob("*.safetensors")) == ["model.safetensors"]
    AutoModelForCausalLM.from_pretrained(str(out))
    mine, theirs = _weights(out), _weights(ref)
    assert mine.keys() == theirs.keys() == _weights(tiny_model_dir).keys()
    for k in mine:
        torch.testing.assert_close(mine[k], theirs[k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.slow
def test_fsdp_resume_from_sharded_checkpoint_equals_uninterrupted(runs, tiny_model_dir, one_process_full):
    full = runs / "fsdp_full"
    if not full.exists():
        pytest.skip("needs test_two_processes_equal_one_full_packed_chunked[fsdp] first (same module)")
    import shutil

    out = runs / "fsdp_resumed"
    shutil.copytree(full / "checkpoint-2", out / "checkpoint-2")
    (out / "metrics.jsonl").write_text("")
    _, log = _train(runs, "fsdp_resumed", tiny_model_dir, 2, port=29544, method="full", packing=True, max_length=64,
                    per_device_train_batch_size=2, save_steps=2, distributed="fsdp", resume="latest")
    assert "resuming from" in log
    resumed = _losses(out)
    assert list(resumed) == [3]
    assert resumed[3] == pytest.approx(_losses(full)[3], rel=RTOL)


@pytest.mark.slow
def test_fsdp_lora_equals_one_process(runs, tiny_model_dir):
    ref, _ = _train(runs, "one_lora", tiny_model_dir, 1, method="lora", per_device_train_batch_size=4)
    out, log = _train(runs, "fsdp_lora", tiny_model_dir, 2, port=29545, method="lora", per_device_train_batch_size=2,
                      distributed="fsdp")
    assert "switched it to its FSDP2 plugin" in log and "chunked loss not used" not in log
    assert "still sharded after the decoder" not in log
    _assert_same_losses(_losses(out), _losses(ref))
    # a plain peft adapter, the same tensors as one process trained
    from peft import PeftConfig

    assert PeftConfig.from_pretrained(str(out)).peft_type == "LORA"
    assert not (out / "model.safetensors").exists()
    mine, theirs = _weights(out), _weights(ref)
    assert mine.keys() == theirs.keys() and any("lora_A" in k for k in mine)
    # Adam divides by sqrt(v): where a LoRA gradient is near zero, float32 summation-order noise in
    # it moves the update by up to ~1e-5 (measured 1.5e-5); a real bug (a rank's gradient lost, a
    # wrong normalisation) moves it by the order of lr x steps = 3e-2.
    for k in mine:
        torch.testing.assert_close(mine[k], theirs[k], rtol=1e-4, atol=1e-4, msg=k)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                    reason="deepspeed is not installed (pip install 'sftune[deepspeed]'); on CPU it uses its CPU accelerator over gloo")
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_equals_one_process(stage, runs, tiny_model_dir, one_process_full):
    ref, _ = one_process_full
    out, log = _train(runs, f"zero{stage}", tiny_model_dir, 2, port=29546 + stage, method="full", packing=True,
                      max_length=64, per_device_train_batch_size=2, save_steps=200, distributed=f"deepspeed-zero{stage}")
    _assert_same_losses(_losses(out), _losses(ref))
    # ZeRO-3: the LM head's weight is registered as an external parameter of the causal LM (loss.py)
    assert "chunked cross-entropy over trained tokens only" in log and "chunked loss not used" not in log
    mine, theirs = _weights(out), _weights(ref)
    assert mine.keys() == theirs.keys()
    for k in mine:
        torch.testing.assert_close(mine[k], theirs[k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.slow
def test_torch_compile_runs_the_chunked_loss(runs, tiny_model_dir, one_process_full):
    ref, _ = one_process_full
    out, log = _train(runs, "compiled", tiny_model_dir, 1, method="full", packing=True, max_length=64,
                      per_device_train_batch_size=4, save_steps=200, training_args={"torch_compile": True})
    assert "chunked cross-entropy over trained tokens only" in log
    _assert_same_losses(_losses(out), _losses(ref))


@pytest.mark.slow
def test_accelerate_launch_fsdp_flags_equal_one_process(runs, tiny_model_dir, one_process_full):
    """``accelerate launch --use_fsdp`` (no --distributed): accelerate's own FSDP variables, handed back on CPU."""
    ref, _ = one_process_full
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--use_fsdp", "--fsdp_version", "2",
                "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP", "--fsdp_state_dict_type", "SHARDED_STATE_DICT",
                "--fsdp_reshard_after_forward", "true"]
    out, log = _train(runs, "accelerate_fsdp", tiny_model_dir, 2, port=29550, launcher=launcher, method="full",
                      packing=True, max_length=64, per_device_train_batch_size=2, save_steps=2)
    assert "switched it to its FSDP2 plugin" in log and "chunked loss not used" not in log
    assert (out / "checkpoint-2" / "pytorch_model_fsdp_0").is_dir()
    _assert_same_losses(_losses(out), _losses(ref))
