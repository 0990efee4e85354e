"""The curation steps' option groups: one validation for Python, YAML and the generated flags."""

from __future__ import annotations

import json

import pytest
from curate_helpers import chat, read_jsonl

from sftune.cli import main
from sftune.curate.io import CurateReport
from sftune.errors import ConfigError
from sftune.options import BestOfKOptions, DistillOptions, FilterOptions, SamplingOptions


def test_filter_options_check_their_values():
    assert FilterOptions(repeats_prompt=0).repeats_prompt is None  # 0 = off, as --repeats-prompt 0 always meant
    with pytest.raises(ConfigError, match=r"repetition must be a share in \(0, 1\], got 1.5") as e:
        FilterOptions(repetition=1.5)
    assert e.value.field == "repetition"
    with pytest.raises(ConfigError, match="unknown language or script 'klingon'") as e:
        FilterOptions(lang="klingon")
    assert e.value.field == "lang"
    with pytest.raises(ConfigError, match="max_tokens must be >= 0"):
        FilterOptions(max_tokens=-1)
    assert not FilterOptions().needs_tokenizer and FilterOptions(min_answer_tokens=3).needs_tokenizer


def test_generating_steps_are_sampling_options_with_their_defaults():
    d, b = DistillOptions(), BestOfKOptions(k=3)
    assert isinstance(d, SamplingOptions) and isinstance(b, SamplingOptions)
    assert (d.temperature, d.max_new_tokens, d.seed, d.num_return_sequences) == (0.0, 512, 0, 1)
    assert (b.temperature, b.max_new_tokens, b.seed, b.k, b.num_return_sequences) == (0.8, 512, 0, 3, 3)
    # The step's own fields stay out of what generation gets.
    assert set(d.generation_args()) == set(SamplingOptions.model_fields) - {"seed", "stop"}
    # SamplingOptions' checks apply as they are.
    with pytest.raises(ConfigError, match=r"top_p must be in \(0, 1\]"):
        DistillOptions(top_p=0)
    with pytest.raises(ConfigError, match="num_return_sequences must be >= 1, got 0"):
        BestOfKOptions(k=0)
    # What a step would silently ignore is refused.
    with pytest.raises(ConfigError, match="stop strings are not applied") as e:
        BestOfKOptions(stop=["\n"])
    assert e.value.field == "stop"
    with pytest.raises(ConfigError, match="must be 1 for distill"):
        DistillOptions(n=2, temperature=0.7)
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        DistillOptions(batch_size=0)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from sftune.model.loading import load_for_inference

    return load_for_inference(str(tiny_model_dir), device="cpu")


def test_distill_applies_every_sampling_value(tiny, tmp_path):
    from sftune.curate.distill import distill

    model, tok = tiny
    (forced,) = tok.encode("cat", add_special_tokens=False)[:1]
    out = tmp_path / "d.jsonl"
    opts = DistillOptions(max_new_tokens=4, keep_truncated=True, logit_bias={forced: 100})
    distill([chat("Name an animal.")], model, tok, out, CurateReport(command="distill"), opts, progress=False)
    (row,) = read_jsonl(out)
    # +100 on one id: the random tiny model writes nothing else.
    assert row["messages"][-1]["content"] == tok.decode([forced] * 4) and row["meta"]["completion_tokens"] == 4


def test_distill_flags_come_from_the_options(tmp_path, tiny_model_dir, capsys):
    src = tmp_path / "prompts.jsonl"
    src.write_text(json.dumps({"messages": [{"role": "user", "content": "Name a colour."}]}) + "\n")
    args = ["curate", "distill", "--data", str(src), "--model", str(tiny_model_dir), "--no-progress"]
    assert main(args + ["--output", str(tmp_path / "o.jsonl"), "--top-p", "0"]) == 2
    assert "top_p must be in (0, 1]" in capsys.readouterr().err
    out = tmp_path / "ok.jsonl"
    assert main(args + ["--output", str(out), "--max-new-tokens", "3", "--keep-truncated", "--chunk", "1"]) == 0
    report = json.loads(out.with_name("ok.report.json").read_text())
    assert report["details"]["options"]["max_new_tokens"] == 3 and report["details"]["options"]["chunk"] == 1
    with pytest.raises(SystemExit):  # distill writes one answer per prompt: no such flag
        main(args + ["--output", str(out), "--num-return-sequences", "2"])
