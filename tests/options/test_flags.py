"""Flags generated from option groups; the precision vocabulary and its old --dtype spelling."""

from __future__ import annotations

import argparse

import pytest

from sftune.commands.flags import add_option_args, options_from_args
from sftune.commands.precision import add_precision_args
from sftune.model.precision import torch_dtype
from sftune.errors import ConfigError
from sftune.options import SamplingOptions, ServingOptions


def _parser(group, **kw):
    p = argparse.ArgumentParser()
    add_option_args(p, group, **kw)
    return p


def test_unset_flags_take_the_command_defaults_and_set_ones_win():
    p = _parser(SamplingOptions, defaults={"temperature": 0.7})
    assert options_from_args(p.parse_args([]), SamplingOptions, defaults={"temperature": 0.7}).temperature == 0.7
    s = options_from_args(p.parse_args(["--temperature", "0", "--stop", "a", "b", "--seed", "3"]), SamplingOptions,
                          defaults={"temperature": 0.7})
    assert (s.temperature, s.stop, s.seed) == (0.0, ["a", "b"], 3)
    assert p.parse_args([]).logit_bias is None
    # dict fields take KEY=VALUE pairs, validated by the group like any other value
    biased = options_from_args(p.parse_args(["--logit-bias", "42=-100", "7=5.5"]), SamplingOptions)
    assert biased.logit_bias == {42: -100.0, 7: 5.5}
    with pytest.raises(ConfigError):
        options_from_args(p.parse_args(["--logit-bias", "x=1"]), SamplingOptions)
    with pytest.raises(SystemExit):
        p.parse_args(["--logit-bias", "42"])  # no '='


def test_checks_live_in_the_type_not_the_flags():
    p = _parser(SamplingOptions)
    with pytest.raises(ConfigError, match="top_p"):
        options_from_args(p.parse_args(["--top-p", "0"]), SamplingOptions)
    p = _parser(ServingOptions)
    with pytest.raises(ConfigError):
        options_from_args(p.parse_args(["--port", "0"]), ServingOptions)


def test_precision_and_old_dtype_alias():
    p = argparse.ArgumentParser()
    add_precision_args(p, "x")
    assert p.parse_args(["--precision", "bf16"]).precision == "bf16"
    assert p.parse_args(["--dtype", "float16"]).precision == "fp16"
    assert p.parse_args([]).precision is None
    with pytest.raises(SystemExit):
        p.parse_args(["--dtype", "float64"])
    import torch

    assert torch_dtype("fp32") is torch.float32 and torch_dtype("bf16") is torch.bfloat16
