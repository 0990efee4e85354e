"""The Train form is generated from the schema: every field, its type, default and help, and the
YAML and command it shows are the same configuration as the form."""

from __future__ import annotations

import doctest
import shlex

import pytest
import yaml

from sftune.cli import TRAIN_KEYS, build_parser, config_from_args
from sftune.config import SFTConfig, load_config
from sftune.ui import form
from sftune.ui.form import (
    RUN_FIELDS, changed_values, field_specs, from_widget_value, grouped, to_command, to_widget_value, to_yaml, validate,
)


def test_doctests_run():
    assert doctest.testmod(form).failed == 0


def test_every_field_appears_once_with_help():
    specs = field_specs(SFTConfig)
    assert [s.name for s in specs] == list(SFTConfig.model_fields)
    shown = [s.name for _, group in grouped(specs) for s in group]
    assert sorted(shown) == sorted(n for n in SFTConfig.model_fields if n not in RUN_FIELDS)
    assert all(s.help for s in specs), [s.name for s in specs if not s.help]


def test_widget_kinds_follow_annotations():
    spec = {s.name: s for s in field_specs(SFTConfig)}
    assert (spec["method"].kind, spec["method"].choices[:2]) == ("choice", ["full", "lora"])
    assert spec["packing"].kind == "bool"
    assert (spec["lora_r"].kind, spec["learning_rate"].kind) == ("int", "float")
    assert (spec["eval_steps"].kind, spec["eval_steps"].optional) == ("int", True)
    assert spec["target_modules"].kind == "lines" and spec["data"].kind == "items"
    assert spec["training_args"].kind == "mapping" and spec["template"].kind == "text"


def test_defaults_round_trip_to_no_changes():
    specs = field_specs(SFTConfig)
    widgets = [to_widget_value(s, s.default) for s in specs]
    assert changed_values(specs, widgets) == {}
    for s, w in zip(specs, widgets):
        assert from_widget_value(s, w) == s.default or (s.default in (None, [], {}) and from_widget_value(s, w) in (None, [], {}))


def test_widget_values_become_config_values():
    specs = field_specs(SFTConfig)
    widgets = {s.name: to_widget_value(s, s.default) for s in specs}
    widgets.update(data="a.jsonl\n{path: b.jsonl, share: 0.4}\n", target_modules="q_proj\n\nv_proj", eval_steps="10",
                   neftune_alpha="", packing=True, max_steps=2, training_args="max_grad_norm: 0.5")
    values = changed_values(specs, [widgets[s.name] for s in specs])
    assert values == {"data": ["a.jsonl", {"path": "b.jsonl", "share": 0.4}], "packing": True, "target_modules": ["q_proj", "v_proj"],
                      "max_steps": 2, "eval_steps": 10, "training_args": {"max_grad_norm": 0.5}}
    cfg = validate(values)
    assert cfg.data[1].share == 0.4 and cfg.eval_steps == 10


def test_bad_values_name_the_field():
    spec = {s.name: s for s in field_specs(SFTConfig)}
    with pytest.raises(ValueError, match="eval_steps: expected an integer"):
        from_widget_value(spec["eval_steps"], "ten")
    with pytest.raises(ValueError, match="max_length"):
        validate({"max_length": 2})


def test_yaml_and_command_are_the_same_config(tmp_path):
    specs = field_specs(SFTConfig)
    values = {"model": "default", "data": ["a.jsonl", {"path": "b.jsonl", "share": 0.4}], "method": "full", "packing": True,
              "group_by_length": False, "target_modules": ["q_proj", "v_proj"], "max_steps": 2, "learning_rate": 1e-4,
              "report_to": ["none"], "system_prompt": "Be brief, 'always'."}
    expected = validate(values)
    (tmp_path / "c.yaml").write_text(to_yaml(values))
    assert load_config(tmp_path / "c.yaml") == expected
    cmd = to_command(values, specs)
    argv = shlex.split(cmd)
    assert argv[:2] == ["sftune", "train"]
    args = build_parser().parse_args(argv[1:])
    assert config_from_args(args, TRAIN_KEYS) == expected


def test_command_points_to_yaml_for_dict_fields():
    cmd = to_command({"training_args": {"max_grad_norm": 0.5}}, field_specs(SFTConfig))
    assert "training_args" in cmd and "YAML" in cmd
    assert yaml.safe_load(to_yaml({"training_args": {"max_grad_norm": 0.5}})) == {"training_args": {"max_grad_norm": 0.5}}
