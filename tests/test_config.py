"""The one config schema: YAML, flags and Python agree; typos fail with a suggestion."""

from __future__ import annotations

import pytest

from sftune.config import ConfigError, SFTConfig, field_help, load_config, save_config


def test_yaml_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: default\nlearning_rate: 1.0e-4\ndata:\n  - a.jsonl\n  - {path: b.jsonl, share: 0.15}\n")
    cfg = load_config(f, {"learning_rate": 5e-5, "method": "full"})
    assert cfg.learning_rate == 5e-5 and cfg.method == "full"
    assert [d.path for d in cfg.data] == ["a.jsonl", "b.jsonl"] and cfg.data[1].share == 0.15


def test_unknown_key_suggests(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("learning_rat: 1e-4\n")
    with pytest.raises(ConfigError, match="Did you mean 'learning_rate'"):
        load_config(f)
    with pytest.raises(ConfigError, match="unknown key 'data.0.shar'"):
        load_config(None, {"data": [{"path": "x", "shar": 0.1}]})


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match="'lora_r'"):
        load_config(None, {"lora_r": "sixteen"})
    with pytest.raises(ConfigError, match="either 'weight' or 'share'"):
        load_config(None, {"data": [{"path": "x", "share": 0.1, "weight": 2}]})


def test_round_trip(tmp_path):
    cfg = SFTConfig(data=["x.jsonl"], method="dora", target_modules=["q_proj"])
    save_config(cfg, tmp_path / "s.yaml")
    assert load_config(tmp_path / "s.yaml") == cfg


def test_every_field_documented():
    missing = [n for n in SFTConfig.model_fields if not field_help(n)]
    assert not missing, f"fields without a docstring: {missing}"
