"""Filter rules on hand-made rows with known problems: exact counts per rule."""

from __future__ import annotations

import pytest
from curate_helpers import chat

from sftune.config import ConfigError
from sftune.data.report import DataError
from sftune.curate.filters import FilterRules, filter_conversations, script_share, truncation_reason
from sftune.curate.io import CurateReport

Q = "What is the capital of France?"

# (row, the rule it fails under FilterRules(repetition=0.3, truncated=True), or None when it is fine)
ROWS = [
    (chat(Q, "The capital of France is Paris."), None),
    (chat(Q, "   \n\t"), "empty_answer"),
    (chat(Q, ""), "empty_answer"),
    (chat(Q), "empty_answer"),  # a prompt-only row has no answer
    (chat(Q, "what is the capital of FRANCE"), "repeats_prompt"),  # same text once normalised
    (chat("Please repeat after me: the quick brown fox jumps over the lazy dog", "The quick brown fox jumps over the lazy dog."), "repeats_prompt"),
    (chat(Q, "I am happy. I am happy. I am happy. I am happy."), "repetition"),
    (chat(Q, "The capital of France is Paris, and it is also the"), "truncated"),
    (chat(Q, "Here is how:\n```python\nprint('Paris')"), "truncated"),  # unclosed code block
    (chat(Q, "Paris"), None),  # short answers need no full stop
    (chat(Q, "42"), None),
    (chat(Q, "Some facts about it:\n- it is in Europe\n- its capital is Paris"), None),  # ends with a list item
    (chat(Q, "Run this:\n```python\nprint('Paris')\n```"), None),  # ends with a closed code block
    (chat(Q, "The capital of France is Paris (on the Seine)"), None),  # closing bracket
    (chat(Q, "It is Paris, as everyone knows 🙂"), None),  # emoji/symbol
    (chat("法国的首都是哪里？", "法国的首都是巴黎，它也是法国最大的城市。"), None),
    (chat("法国的首都是哪里？", "法国的首都是巴黎，它也是法国最大的城市之一，而且"), "truncated"),
]


def run(rows, rules, **kw):
    report = CurateReport(command="filter")
    convs = [r[0] if isinstance(r, tuple) else r for r in rows]
    kept = filter_conversations(convs, rules, report, **kw)
    return kept, report


def test_hand_made_set_exact_counts_per_rule():
    kept, report = run(ROWS, FilterRules(repetition=0.3, truncated=True))
    expected: dict[str, int] = {}
    for _, rule in ROWS:
        if rule:
            expected[rule] = expected.get(rule, 0) + 1
    assert dict(report.dropped) == expected
    assert [c for c in kept] == [r for r, rule in ROWS if rule is None]  # order kept
    assert report.rows_in == len(ROWS) and report.kept == len(kept) == len(ROWS) - sum(expected.values())
    assert report.details["rules"]["truncated"] is True


def test_rules_are_switched_on_one_by_one():
    # Defaults: only empty_answer and repeats_prompt are on.
    _, report = run(ROWS, FilterRules())
    assert dict(report.dropped) == {"empty_answer": 3, "repeats_prompt": 2}
    _, report = run(ROWS, FilterRules(empty_answer=False, repeats_prompt=None, truncated=True))
    # The 3 cut-off answers, plus the parroted question (no full stop); blank answers are not 'truncated'.
    assert dict(report.dropped) == {"truncated": 4}


def test_row_counted_under_first_failing_rule_only():
    # Repetitive *and* cut off: counted once, under repetition (it comes first).
    row = chat(Q, "I am happy. I am happy. I am happy. I am happy and then")
    _, report = run([row], FilterRules(repetition=0.3, truncated=True))
    assert dict(report.dropped) == {"repetition": 1}


def test_examples_name_the_row():
    rows = [chat(Q, "fine answer here.", line=1), chat(Q, " ", line=2)]
    _, report = run(rows, FilterRules())
    assert report.examples["empty_answer"] == ["test.jsonl:2 (blank answer)"]


def test_lang_rule_counts_letters_outside_code():
    rows = [
        chat("你好", "你好！我是一个乐于助人的助手。"),  # zh: kept
        chat("你好", "Hello! I am a helpful assistant."),  # English answer: dropped
        chat("写代码", "下面是代码：\n```python\ndef hello_world():\n    print('hello world, this is english text')\n```\n完成。"),  # code ignored: kept
        chat("你好", "OK, 这个 answer is mostly written in English words here."),  # mostly latin: dropped
        chat("数字", "12345"),  # no letters at all: not judged
    ]
    _, report = run(rows, FilterRules(lang="zh"))
    assert dict(report.dropped) == {"lang": 2}
    _, report = run(rows, FilterRules(lang="en"))  # latin: the Chinese answers go
    assert dict(report.dropped) == {"lang": 2}
    assert script_share("Привет мир", {"cyrillic"}) == 1.0


def test_unknown_lang_fails_at_start():
    with pytest.raises(ConfigError, match="unknown language"):
        FilterRules(lang="klingon")


def test_truncation_heuristic_cases():
    assert truncation_reason("This sentence is complete.") is None
    assert truncation_reason("这是一个完整的句子。") is None
    assert truncation_reason("这是一个完整的问题吗？") is None
    assert truncation_reason("He said \"this is how it ends.\"") is None
    assert truncation_reason("Here are the five steps you need:") == "no terminal punctuation"
    assert truncation_reason("| a | b |\n|---|---|\n| 1 | 2 |") is None


def test_token_bounds_use_the_tokenizer(smol_tokenizer):
    tok = smol_tokenizer
    short = chat("Hi", "Hello.")
    long = chat("Tell me a story", "Once upon a time " * 40 + "the end.")
    mid = chat("Count", "one two three four five six seven eight nine ten.")
    rows = [short, long, mid]
    n_ans = [len(tok(c.messages[-1].content, add_special_tokens=False)["input_ids"]) for c in rows]
    n_all = [
        len(tok(tok.apply_chat_template([m.to_dict() for m in c.messages], tokenize=False), add_special_tokens=False)["input_ids"])
        for c in rows
    ]
    assert n_ans[0] < n_ans[2] < n_ans[1]
    kept, report = run(rows, FilterRules(min_answer_tokens=n_ans[2], max_tokens=n_all[1] - 1), tokenizer=tok)
    assert kept == [mid]
    assert dict(report.dropped) == {"min_answer_tokens": 1, "max_tokens": 1}
    assert f"{n_all[1]} tokens" in report.examples["max_tokens"][0]


@pytest.mark.parametrize("template, kwargs, reasoning", [
    ("hermes", {}, "keep"), ("qwen3", {}, "drop"), ("qwen3", {"enable_thinking": False}, "inline"), (None, {}, "keep"),
])
def test_token_lengths_equal_what_training_encodes(smol_tokenizer, template, kwargs, reasoning):
    # tool schemas, calls (object and string arguments), results and reasoning all count, and raw
    # rows count the EOS training appends: the length is exactly the encoded row's
    from curate_helpers import tool_chat

    from sftune.curate.filters import token_lengths
    from sftune.data.conversation import Conversation
    from sftune.data.templates import resolve_template
    from sftune.data.tokenize import Encoder

    tok = smol_tokenizer
    tpl = resolve_template(template, tok, warn=False)
    rows = [chat(Q, "Paris."), Conversation.text("Plain replay text."), Conversation.completion("1+1=", "2")]
    if template is not None:  # SmolLM2's own template shows no tools: training refuses tool rows there
        rows.append(tool_chat("Oslo"))
    totals, _ = token_lengths(rows, tok, tpl, template_kwargs=kwargs, reasoning=reasoning)
    enc = Encoder(tok, tpl, "assistant", max_length=100_000, template_kwargs=kwargs, reasoning=reasoning)
    assert totals == [len(enc.encode(c)["input_ids"]) for c in rows]
    if template is not None:
        plain = [{"role": m.role, "content": m.content} for m in rows[3].messages]  # what was counted before
        assert totals[3] > len(tok(tok.apply_chat_template(plain, chat_template=tpl, tokenize=False), add_special_tokens=False)["input_ids"])


def test_max_tokens_counts_the_tool_calls(smol_tokenizer):
    from curate_helpers import tool_chat

    from sftune.data.templates import resolve_template
    from sftune.data.tokenize import Encoder

    tok = smol_tokenizer
    rows = [tool_chat("Oslo"), chat(Q, "Paris.")]
    enc = Encoder(tok, resolve_template("hermes", tok), max_length=100_000)
    n_tool, n_plain = (len(enc.encode(c)["input_ids"]) for c in rows)  # as training encodes them
    kept, report = run(rows, FilterRules(max_tokens=n_tool - 1), tokenizer=tok, template="hermes")
    assert kept == [rows[1]] and report.examples["max_tokens"] == [f"row 0 ({n_tool} tokens, bound {n_tool - 1})"]
    kept, _ = run(rows, FilterRules(max_tokens=n_tool), tokenizer=tok, template="hermes")
    assert kept == rows and n_plain < n_tool


def test_token_rules_need_a_tokenizer():
    with pytest.raises(ConfigError, match="tokenizer"):
        run([chat(Q, "A.")], FilterRules(max_tokens=10))


def test_user_predicate_from_a_file(tmp_path):
    f = tmp_path / "my_rules.py"
    f.write_text("def mentions_paris(conv):\n    return 'Paris' in conv.messages[-1].content\n")
    rows = [chat(Q, "It is Paris."), chat(Q, "It is Lyon."), chat(Q, " ")]
    kept, report = run(rows, FilterRules(predicate=f"{f}:mentions_paris"))
    assert kept == rows[:1]
    assert dict(report.dropped) == {"empty_answer": 1, "predicate": 1}  # the empty row fails earlier, once


def test_predicate_import_errors_are_clear(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module_xyz'"):
        run([chat(Q, "A.")], FilterRules(predicate="no_such_module_xyz:keep"))
    (tmp_path / "rules_mod.py").write_text("def keep(c):\n    return True\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="has no 'kep'.*keep"):
        run([chat(Q, "A.")], FilterRules(predicate="rules_mod:kep"))
    with pytest.raises(ConfigError, match="MODULE:FUNCTION"):
        run([chat(Q, "A.")], FilterRules(predicate="rules_mod"))
    (tmp_path / "broken_mod.py").write_text("import not_installed_pkg_abc\n")
    with pytest.raises(ConfigError, match="not_installed_pkg_abc"):
        run([chat(Q, "A.")], FilterRules(predicate="broken_mod:keep"))


def test_predicate_that_raises_names_the_row(tmp_path):
    f = tmp_path / "bad.py"
    f.write_text("def keep(conv):\n    raise KeyError('oops')\n")
    with pytest.raises(DataError, match=r"test.jsonl:7.*KeyError"):
        run([chat(Q, "A fine answer.", line=7)], FilterRules(predicate=f"{f}:keep"))
