"""The CLI is generated from the schema: every field is a flag with its docstring as help."""

from __future__ import annotations

import pytest

from sftune.cli import build_parser, main
from sftune.config import SFTConfig


def test_train_help_lists_every_field(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in SFTConfig.model_fields:
        if name != "training_args":
            assert "--" + name.replace("_", "-") in out, name
    assert "Peak learning rate" in out


def test_flags_become_config(tmp_path):
    from sftune.cli import TRAIN_KEYS, config_from_args

    f = tmp_path / "c.yaml"
    f.write_text("learning_rate: 0.001\nmethod: full\n")
    args = build_parser().parse_args(["train", str(f), "--learning-rate", "3e-4", "--data", "a.jsonl,share=0.2", "--data", "b.jsonl",
                                      "--target-modules", "q_proj", "v_proj", "--no-compare"])
    cfg = config_from_args(args, TRAIN_KEYS, args.config_file)
    assert cfg.learning_rate == 3e-4 and cfg.method == "full"  # flag wins, file fills the rest
    assert [(d.path, d.share) for d in cfg.data] == [("a.jsonl", 0.2), ("b.jsonl", None)]
    assert cfg.target_modules == ["q_proj", "v_proj"]


def test_config_typo_exits_2_with_suggestion(tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text("num_train_epoch: 2\n")
    assert main(["train", str(f)]) == 2
    assert "Did you mean 'num_train_epochs'" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "sftune" in capsys.readouterr().out


def test_inference_flags_come_from_the_option_groups(capsys):
    p = build_parser()
    a = p.parse_args(["chat", "--model", "m", "--dtype", "bfloat16", "--frequency-penalty", "0.5", "--stop", "END"])
    assert a.precision == "bf16" and a.frequency_penalty == 0.5 and a.stop == ["END"]  # old --dtype maps onto --precision
    assert p.parse_args(["serve", "--model", "m", "--precision", "fp16", "--port", "9000"]).port == 9000
    with pytest.raises(SystemExit):
        main(["chat", "--help"])
    out = capsys.readouterr().out
    assert "--precision" in out and "[--dtype" not in out and "(default: 0.7)" in out  # chat's own temperature default


def test_sampling_checks_are_the_library_s(tmp_path, capsys):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "hi"}\n')
    # refused by SamplingOptions before any model is loaded; main() catches SftuneError once
    assert main(["generate", "--model", "x", "--input", str(f), "--output", str(tmp_path / "o.jsonl"), "--top-p", "0"]) == 2
    assert "top_p must be in (0, 1]" in capsys.readouterr().err
    assert main(["generate", "--model", "x", "--input", str(f), "--output", str(tmp_path / "o.jsonl"), "--num-return-sequences", "2"]) == 2
    assert "needs sampling" in capsys.readouterr().err


def test_no_library_module_imports_the_cli():
    import pathlib

    import sftune

    root = pathlib.Path(sftune.__file__).parent
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if p.name not in ("cli.py", "__main__.py") and ("from ..cli import" in p.read_text() or "from .cli import" in p.read_text()
                                                                  or "sftune.cli import" in p.read_text())]
    assert offenders == []


def test_train_export_is_checked_before_training(tmp_path, capsys, monkeypatch):
    import importlib

    run_module = importlib.import_module("sftune.train.run")  # `sftune.train` the attribute is the function
    monkeypatch.setattr(run_module, "train", lambda *a, **k: pytest.fail("training started with a bad --export"))
    assert main(["train", "--export", "gguf:nope", "--output-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "q8_0" in err and "f16" in err
    assert main(["train", "--export", "onnx", "--output-dir", str(tmp_path / "run")]) == 2
    assert "the only export format is gguf" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    from sftune.cli import TRAIN_KEYS, config_from_args

    assert config_from_args(build_parser().parse_args(["train", "--export", "gguf:Q8_0"]), TRAIN_KEYS).export == "gguf:Q8_0"


def test_train_unknown_demo_names_the_bundled_demos(capsys, monkeypatch):
    import importlib

    from sftune.train.demos import demo_names

    run_module = importlib.import_module("sftune.train.run")
    monkeypatch.setattr(run_module, "train", lambda *a, **k: pytest.fail("training started with an unknown demo"))
    assert main(["train", "--demo", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown demo 'nope'" in err and all(name in err for name in demo_names()) and "tools" in err


def test_template_kwargs_flag_reads_key_values():
    a = build_parser().parse_args(["train", "--template-kwargs", "enable_thinking=false"])
    assert a.template_kwargs == {"enable_thinking": False}
