"""The fast encoding paths (one render per conversation shape, span-end label lookup) give
exactly the rows, labels and statistics of the direct path, on many random conversations."""

from __future__ import annotations

import logging
import random
import zlib

import pytest

from sftune.data import render as render_module
from sftune.data import tokenize as tokenize_module
from sftune.data.conversation import Conversation, Message
from sftune.data.report import DataReport
from sftune.data.shapes import ShapeRenderer, opacity_problem
from sftune.data.templates import BUILTIN_TEMPLATES, resolve_template
from sftune.data.tokenize import Encoder

OPAQUE = [
    BUILTIN_TEMPLATES["chatml"],
    BUILTIN_TEMPLATES["qwen2.5"],
    BUILTIN_TEMPLATES["human_assistant"],
    "{% for m in messages %}{{ m.role ~ ': ' ~ m.content }}\n{% endfor %}",
    "{% for m in messages %}{% generation %}{{ m['content'] }}{% endgeneration %}{% endfor %}",
    "{% for m in messages %}{% if m['role'] == 'user' %}{{ 'U:' + m['content'] }}{% else %}{{ 'A:' + m['content'] }}{% endif %}{% endfor %}",
    "{% for m in messages %}{{ loop.index ~ (m.role | upper) ~ ': ' }}{{ m.content }}{% endfor %}{{ messages | length }}",
    "{% for m in messages %}{{ '<|user|>' if m.role == 'user' else '<|bot|>' }}{{ m.content }}{% endfor %}",
]
NOT_OPAQUE = {
    BUILTIN_TEMPLATES["llama3"]: "'trim' filter",
    "{% for m in messages %}{% if '<think>' in m.content %}x{% endif %}{{ m.content }}{% endfor %}": "comparison",
    "{% set sys = messages[0]['content'] %}{{ sys }}": "{% set %}",
    "{{ messages[0].get('content') }}": "'.get'",
    "{{ messages | map(attribute='content') | first }}": "string 'content'",
    "{% filter upper %}{{ messages[0].content }}{% endfilter %}": "macro or block",
    "{% macro show(m) %}{{ m.content }}{% endmacro %}{{ show(messages[0]) | trim }}": "macro or block",
    "{{ messages | tojson }}": "'tojson'",
    "{{ messages[0].content if messages[0].content else 'empty' }}": "condition",
    "{{ (messages[0].content | length) ~ '' }}": "'length' filter",
    "{% for m in messages %}{{ m.content": "does not parse",
    # whole messages written as text: their repr would escape the content
    "{% for m in messages %}{{ m }}{% endfor %}": "a message is written",
    "{{ messages | first }}": "a message is written",
    "{% set rest = messages[1:] %}{% for m in rest %}{{ '<' ~ m }}{% endfor %}": "a message is written",
    "{% for m in messages %}{{ m['name'] }}: {{ m.content }}{% endfor %}": "a message is written",
}


@pytest.mark.parametrize("template", OPAQUE)
def test_opaque_templates_are_recognised(template):
    assert opacity_problem(template) is None


@pytest.mark.parametrize("template,why", sorted(NOT_OPAQUE.items()))
def test_content_dependent_templates_are_refused(template, why):
    problem = opacity_problem(template)
    assert problem is not None and why in problem


def test_the_models_own_template_is_opaque(smol_tokenizer):
    assert opacity_problem(resolve_template(None, smol_tokenizer)) is None


PIECES = [
    "Hello", " leading space", "trailing space ", "\n\nnewlines first", "ends with newline\n", "tab\there",
    "你好,世界 🙂", "emoji 🤖🤖 run", "<|im_start|>assistant\nfake turn<|im_end|>", "Human: Assistant:",
    "\ue000 7\ue001 sentinel-like", "  ", "x", "1+1=2", "a" * 40, "Multi\nline\nanswer.",
]


def random_conversations(n: int, seed: int = 0) -> list[Conversation]:
    rnd = random.Random(seed)
    convs = []
    for _ in range(n):
        msgs = []
        if rnd.random() < 0.4:
            msgs.append(Message("system", rnd.choice(PIECES)))
        for _ in range(rnd.randint(1, 4)):
            msgs.append(Message("user", " ".join(rnd.sample(PIECES, 2))))
            answer = rnd.choice(PIECES) if rnd.random() < 0.5 else rnd.choice(PIECES).strip()
            answer = answer if answer.strip() else "ok"
            flag = rnd.choice([None, None, None, False, True])
            msgs.append(Message("assistant", answer, flag))
        if not any(m.trainable is not False for m in msgs if m.role == "assistant"):
            msgs[-1].trainable = None
        convs.append(Conversation.chat(msgs))
    return convs


def encode_all(enc: Encoder, convs: list[Conversation]) -> tuple[list[dict], tuple]:
    report = DataReport()
    rows = enc.encode_many(convs, report)
    s = enc.stats
    return rows, (s.spans, s.spans_without_end_token, s.straddling_tokens, s.truncated, report.n_dropped)


@pytest.mark.parametrize("template_name", ["model", "chatml", "qwen2.5", "human_assistant", "llama3"])
@pytest.mark.parametrize("policy", ["assistant", "last", "completion", "all"])
def test_fast_paths_equal_the_direct_path(smol_tokenizer, template_name, policy, monkeypatch):
    tok = smol_tokenizer
    template = resolve_template(template_name, tok)
    convs = random_conversations(150, seed=zlib.crc32(f"{template_name}-{policy}".encode()))
    renders = []
    original = render_module.render  # the direct (exact) path renders through sftune.data.render
    monkeypatch.setattr(render_module, "render", lambda *a, **k: renders.append(1) or original(*a, **k))

    fast = Encoder(tok, template, policy, max_length=96)
    got, got_stats = encode_all(fast, convs)
    direct_renders = len(renders)
    want, want_stats = encode_all(Encoder(tok, template, policy, max_length=96, fast=False), convs)

    assert [r["input_ids"] for r in got] == [r["input_ids"] for r in want]
    assert [r["labels"] for r in got] == [r["labels"] for r in want]
    assert got_stats == want_stats
    if template_name != "llama3":  # llama3 trims content: no shapes, by proof
        # the shortcuts really ran, and never had to back off
        assert isinstance(fast.shapes, ShapeRenderer)
        assert direct_renders < len(convs)  # only the first conversation of each shape renders directly
        assert fast._boundary_labels == (policy != "all")
    else:
        assert fast.shapes is None


def test_shapes_back_off_when_the_proof_is_wrong(smol_tokenizer, monkeypatch, caplog):
    # Pretend Llama 3's template (which trims content) passed the proof: the first-of-shape check
    # catches the difference, warns, and every row still comes out exactly as the direct path's.
    tok = smol_tokenizer
    template = resolve_template("llama3", tok)
    monkeypatch.setattr(tokenize_module, "opacity_problem", lambda t: None)
    convs = [
        Conversation.chat([Message("user", f"  padded question {i}  "), Message("assistant", f"  answer {i}\n")])
        for i in range(5)
    ]
    enc = Encoder(tok, template, "assistant")
    with caplog.at_level(logging.WARNING):
        got, _ = encode_all(enc, convs)
    want, _ = encode_all(Encoder(tok, template, "assistant", fast=False), convs)
    assert enc.shapes is None
    assert "disagreed" in caplog.text
    assert [(r["input_ids"], r["labels"]) for r in got] == [(r["input_ids"], r["labels"]) for r in want]


def test_template_errors_still_reach_the_report(smol_tokenizer):
    # A conversation that starts with the assistant: the generation prompt of an empty history
    # cannot be rendered, on either path, and the row is dropped with the template's reason.
    tok = smol_tokenizer
    convs = [Conversation.chat([Message("assistant", "unprompted")])] + random_conversations(3)
    for fast in (True, False):
        report = DataReport()
        rows = Encoder(tok, resolve_template(None, tok), "assistant", fast=fast).encode_many(convs, report)
        assert len(rows) == 3 and report.dropped["chat template failed"] == 1


def test_direct_tokenizer_call_matches_the_tokenizer(smol_tokenizer):
    texts = ["Hello <|im_start|>user\nhi<|im_end|>", "你好 🙂\n\n  spaced", ""]
    enc = Encoder(smol_tokenizer, resolve_template(None, smol_tokenizer))
    ref = smol_tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    got = enc._tokenize(texts, add_special_tokens=False)
    assert [e.ids for e in got] == ref["input_ids"]
    assert [[tuple(o) for o in e.offsets] for e in got] == [[tuple(o) for o in r] for r in ref["offset_mapping"]]


def _trained_tokenizer(kind: str):
    """A small tokenizer of another family, trained here: sentencepiece-style (Metaspace, where
    spaces become '▁') or BERT-style (whitespace dropped, so some characters have no token)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<|im_start|>", "<|im_end|>"]
    if kind == "metaspace":
        tk = Tokenizer(models.BPE(unk_token="<unk>"))
        tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials)
    else:
        tk = Tokenizer(models.WordPiece(unk_token="<unk>"))
        tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials)
    corpus = [c.messages[0].content + " " + m.content for c in random_conversations(200, seed=7) for m in c.messages]
    tk.train_from_iterator(corpus * 3, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", eos_token="<|im_end|>")


@pytest.mark.parametrize("kind", ["metaspace", "bert"])
@pytest.mark.parametrize("policy", ["assistant", "last"])
def test_fast_paths_equal_the_direct_path_on_other_tokenizer_families(kind, policy):
    tok = _trained_tokenizer(kind)
    convs = random_conversations(150, seed=3)
    fast = Encoder(tok, BUILTIN_TEMPLATES["chatml"], policy, max_length=128)
    got, got_stats = encode_all(fast, convs)
    want, want_stats = encode_all(Encoder(tok, BUILTIN_TEMPLATES["chatml"], policy, max_length=128, fast=False), convs)
    assert [(r["input_ids"], r["labels"]) for r in got] == [(r["input_ids"], r["labels"]) for r in want]
    assert got_stats == want_stats
    assert fast._boundary_labels and isinstance(fast.shapes, ShapeRenderer)
