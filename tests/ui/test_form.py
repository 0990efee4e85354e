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


def test_tabs_are_the_option_groups_of_the_schema():
    """One tab per option group SFTConfig is made of, each holding exactly that group's own fields;
    together every SFTConfig field once, except the two the page sets itself (see RUN_FIELDS:
    the run folder box is output_dir, the Resume button is resume)."""
    from sftune.options import GROUPS

    assert form.FORM_GROUPS == ("model", "data", "method", "training")
    assert set(SFTConfig.__mro__) >= {GROUPS[g] for g in form.FORM_GROUPS}
    layout = grouped(field_specs(SFTConfig))
    assert [title for title, _ in layout] == ["model", "data", "method", "training"]  # no "other" tab left over
    for title, specs in layout:
        own = [n for n in GROUPS[title].__annotations__ if n in GROUPS[title].model_fields]
        assert [s.name for s in specs] == [n for n in own if n not in RUN_FIELDS], title
    shown = [s.name for _, specs in layout for s in specs]
    assert len(shown) == len(set(shown))
    assert set(shown) == set(SFTConfig.model_fields) - {"output_dir", "resume"}
    assert set(RUN_FIELDS) == {"output_dir", "resume"}
    assert all(form.group_help(t) for t, _ in layout)


def test_a_field_of_no_group_is_still_shown():
    specs = field_specs(SFTConfig)
    layout = dict(grouped(specs, {"model": ["model"]}))
    assert [s.name for s in layout["model"]] == ["model"]
    assert "lora_r" in [s.name for s in layout["other"]] and "output_dir" not in [s.name for s in layout["other"]]


def test_new_fields_have_their_widgets():
    spec = {s.name: s for s in field_specs(SFTConfig)}
    assert spec["template_kwargs"].kind == "mapping"
    assert (spec["reasoning"].kind, spec["reasoning"].choices) == ("choice", ["keep", "mask", "inline", "drop"])
    assert (spec["tool_format"].kind, spec["tool_format"].optional) == ("name_or_mapping", True)
    assert spec["eval_tools"].kind == "text" and spec["export"].kind == "text" and spec["export"].optional
    assert "gguf:QUANT" in spec["export"].help


def test_tool_format_is_a_name_or_a_mapping():
    spec = {s.name: s for s in field_specs(SFTConfig)}["tool_format"]
    assert from_widget_value(spec, "") is None and from_widget_value(spec, " hermes ") == "hermes"
    declared = {"call_start": "<fn>", "call_end": "</fn>"}
    assert from_widget_value(spec, "{call_start: '<fn>', call_end: '</fn>'}") == declared
    assert from_widget_value(spec, to_widget_value(spec, declared)) == declared
    assert validate({"tool_format": declared}).tool_format == declared
    with pytest.raises(ValueError, match="tool_format"):
        from_widget_value(spec, "{call_start: [")
    with pytest.raises(ValueError, match="tool_format"):
        validate({"tool_format": "no-such-format"})


def test_new_fields_reach_yaml_and_command(tmp_path):
    specs = field_specs(SFTConfig)
    widgets = {s.name: to_widget_value(s, s.default) for s in specs}
    widgets.update(template_kwargs="enable_thinking: false\nname: Ann", reasoning="mask", tool_format="{call_start: <fn>, call_end: </fn>}",
                   export="gguf:q8_0", eval_tools="tools.json")
    values = changed_values(specs, [widgets[s.name] for s in specs])
    assert values == {"template_kwargs": {"enable_thinking": False, "name": "Ann"}, "reasoning": "mask",
                      "tool_format": {"call_start": "<fn>", "call_end": "</fn>"}, "eval_tools": "tools.json", "export": "gguf:q8_0"}
    expected = validate(values)
    (tmp_path / "c.yaml").write_text(to_yaml(values))
    assert load_config(tmp_path / "c.yaml") == expected
    cmd = to_command(values, specs)
    command, _, note = cmd.partition("   # plus ")
    # A mapping the train parser cannot read as KEY=VALUE is named in the note, never silently dropped.
    left_out = {n for n in values if n in note.split(":")[0]}
    assert left_out <= {"template_kwargs"}, cmd
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert config_from_args(args, TRAIN_KEYS) == validate({k: v for k, v in values.items() if k not in left_out})


def test_mapping_flags_are_written_as_key_values(monkeypatch):
    """Where the parser reads a mapping flag as KEY=VALUE items, the command carries it that way."""
    import argparse

    from sftune.commands.flags import KeyValues

    monkeypatch.setattr(form, "_train_flags", lambda: {"template_kwargs": "KeyValues", "training_args": "_StoreAction"})
    cmd = to_command({"template_kwargs": {"enable_thinking": False, "name": "Ann Lee"}, "training_args": {"max_grad_norm": 0.5}},
                     field_specs(SFTConfig))
    command, _, note = cmd.partition("   # plus ")
    assert "training_args" in note and "template_kwargs" not in note
    p = argparse.ArgumentParser()
    p.add_argument("--template-kwargs", nargs="+", action=KeyValues)
    assert p.parse_args(shlex.split(command)[2:]).template_kwargs == {"enable_thinking": False, "name": "Ann Lee"}


def test_bad_export_names_the_quants():
    with pytest.raises(Exception, match="q8_0") as e:
        validate({"export": "gguf:nope"})
    assert "nope" in str(e.value)


def test_form_knows_the_train_flags():
    flags = form._train_flags()
    assert sorted(flags) == sorted(TRAIN_KEYS)
    assert set(form.YAML_ONLY) == set(SFTConfig.model_fields) - set(TRAIN_KEYS)
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    assert {a.dest: type(a).__name__ for a in sub._actions if a.dest in flags} == flags
