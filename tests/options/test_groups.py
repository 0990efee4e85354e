"""The option groups: one flat run config by inheritance, errors naming fields, a schema for forms."""

from __future__ import annotations

import pytest

from sftune.errors import ConfigError, SftuneError
from sftune.options import (GROUPS, DataOptions, DedupOptions, MethodOptions, ModelOptions, SamplingOptions, SFTConfig,
                            TrainingOptions, describe_schema)


def test_run_config_is_the_union_of_its_groups():
    groups = (ModelOptions, DataOptions, MethodOptions, TrainingOptions)
    union = [n for g in groups for n in g.model_fields]
    assert list(SFTConfig.model_fields) == union  # model first, training last: YAML keys in a reading order
    assert len(union) == len(set(union))  # no key in two groups
    assert issubclass(SFTConfig, groups)


def test_errors_are_config_errors_with_the_field():
    with pytest.raises(ConfigError, match="Did you mean 'temperature'") as e:
        SamplingOptions(temprature=1)
    assert isinstance(e.value, SftuneError) and isinstance(e.value, ValueError) and e.value.field == "temprature"
    with pytest.raises(ConfigError, match=r"top_p must be in \(0, 1\]") as e:
        SamplingOptions(top_p=1.5)
    assert e.value.field == "top_p"
    with pytest.raises(ConfigError, match="'lora_r'") as e:
        SFTConfig(lora_r="sixteen")
    assert e.value.field == "lora_r"


@pytest.mark.parametrize("kw, field", [
    ({"temperature": -0.1}, "temperature"), ({"top_k": -1}, "top_k"), ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"repetition_penalty": 0}, "repetition_penalty"), ({"frequency_penalty": 2.5}, "frequency_penalty"),
    ({"presence_penalty": -3}, "presence_penalty"), ({"logit_bias": {"x": 1}}, "logit_bias"),
    ({"logit_bias": {"5": 101}}, "logit_bias"), ({"n": 0}, "num_return_sequences"),
    ({"n": 2, "temperature": 0}, "num_return_sequences"), ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
])
def test_sampling_refuses(kw, field):
    with pytest.raises(ConfigError) as e:
        SamplingOptions(**kw)
    assert e.value.field == field, str(e.value)


def test_sampling_normalises():
    s = SamplingOptions(n=3, temperature=0.5, stop="END", logit_bias={"7": 5, 9: -100})
    assert s.num_return_sequences == 3 and s.stop == ["END"] and s.logit_bias == {7: 5.0, 9: -100.0}
    with pytest.raises(ConfigError, match="outside the model's vocabulary"):
        s.check_vocab(8)
    s.check_vocab(10)
    assert "seed" not in s.generation_args() and s.generation_args()["logit_bias"] == {7: 5.0, 9: -100.0}


def test_dedup_ngram_default_is_one_rule():
    assert DedupOptions().ngram == 3 and DedupOptions(shingle="char").ngram == 5 and DedupOptions(shingle="char", ngram=4).ngram == 4
    with pytest.raises(ConfigError):
        DedupOptions(shingle="sentence")


def test_describe_schema_has_what_a_form_needs():
    schema = {g["group"]: g for g in describe_schema()}
    assert list(schema) == list(GROUPS)
    assert {"model", "data", "method", "training", "sampling", "evaluation", "serving", "dedup"} <= set(schema)
    for g in schema.values():
        assert g["help"] and g["fields"]
        for f in g["fields"]:
            assert set(f) == {"name", "type", "choices", "default", "help", "flag"}
            assert f["help"], (g["group"], f["name"])
    method = {f["name"]: f for f in schema["method"]["fields"]}["method"]
    assert method["type"] == "choice" and "lora" in method["choices"] and method["default"] == "lora"
    lr = {f["name"]: f for f in schema["training"]["fields"]}["learning_rate"]
    assert lr == {"name": "learning_rate", "type": "float", "choices": None, "default": 2e-4,
                  "help": lr["help"], "flag": "--learning-rate"} and "Peak learning rate" in lr["help"]
    ask = {f["name"]: f for f in schema["evaluation"]["fields"]}["ask"]
    assert ask["flag"] == "--no-questions" and ask["default"] is True
