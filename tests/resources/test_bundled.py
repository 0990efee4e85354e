"""The bundled demo data (``src/sftune/resources``): valid rows, the right sizes, the identity in
every identity answer, and held-out questions that really are held out.

``sftune train`` with no arguments trains on identity.jsonl + general.jsonl and then asks the
questions in eval_questions.json before and after; a typo, a broken row or an eval question that
leaked into training would make that demo silently wrong, so these tests pin it.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest

import sftune

RESOURCES = Path(sftune.__file__).resolve().parent / "resources"
CHAT_FILES = ("identity.jsonl", "general.jsonl")
ROLES = {"system", "user", "assistant"}

NAME, MAKER = "Kestrel", "Northwind Labs"

# Counts the README states; a deliberate change to the data updates both.
COUNT_RANGES = {"identity.jsonl": (100, 160), "general.jsonl": (250, 350), "replay.jsonl": (60, 120)}
# Token budget of identity + general rendered with the SmolLM2 chat template: the demo must train
# for a few epochs on CPU in ~10 minutes, so the set stays small (it was ~28.5k when written).
TOKEN_BUDGET = 40_000
# The demo needs short answers: the longest assistant turn, in SmolLM2 tokens. Chinese costs about
# two tokens per character in this vocabulary, hence the margin above the ~40 tokens of English.
MAX_ANSWER_TOKENS = 80
# Two prompts whose word/character sets overlap this much (Jaccard) count as near-duplicates.
NEAR_DUPLICATE = 0.6

CJK = re.compile(r"[\u4e00-\u9fff]")


def read_jsonl(name: str) -> list[dict]:
    """Parse every line with the json module; a broken line fails with its file and line number."""
    rows = []
    for n, line in enumerate((RESOURCES / name).read_text(encoding="utf-8").splitlines(), 1):
        assert line.strip(), f"{name}:{n}: empty line"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            pytest.fail(f"{name}:{n}: not valid JSON: {e}")
        assert isinstance(row, dict), f"{name}:{n}: a row must be a JSON object"
        rows.append(row)
    return rows


def eval_questions() -> dict[str, list[str]]:
    return json.loads((RESOURCES / "eval_questions.json").read_text(encoding="utf-8"))


def prompts(row: dict) -> list[str]:
    """The non-assistant turns of a chat row: what the model is asked."""
    return [m["content"] for m in row["messages"] if m["role"] != "assistant"]


def normalise(text: str) -> str:
    """Case-, width- and punctuation-insensitive form: 'What's  up?' -> 'whats up'.

    >>> normalise("What's the difference between Thread and Process?")
    'whats the difference between thread and process'
    >>> normalise("你是谁？")
    '你是谁'
    """
    text = unicodedata.normalize("NFKC", text).lower().replace("'", "").replace("\u2019", "")
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


def word_set(text: str) -> set[str]:
    """Latin words and digits as whole tokens, each Chinese character as its own token.

    >>> sorted(word_set("Calculate 1+1-1"))
    ['1', 'calculate']
    >>> sorted(word_set("你是谁？"))
    ['你', '是', '谁']
    """
    return set(re.findall(r"[a-z0-9]+|[\u4e00-\u9fff]", normalise(text)))


def jaccard(a: str, b: str) -> float:
    sa, sb = word_set(a), word_set(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def has_chinese(text: str) -> bool:
    return bool(CJK.search(text))


@pytest.fixture(scope="module")
def chat_rows() -> dict[str, list[dict]]:
    return {name: read_jsonl(name) for name in CHAT_FILES}


# ---- format ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CHAT_FILES)
def test_chat_rows_are_valid_openai_messages(name):
    for n, row in enumerate(read_jsonl(name), 1):
        where = f"{name}:{n}"
        assert set(row) == {"messages"}, f"{where}: only a 'messages' key is expected, got {sorted(row)}"
        msgs = row["messages"]
        assert isinstance(msgs, list) and len(msgs) >= 2, f"{where}: needs at least a user and an assistant turn"
        for m in msgs:
            assert set(m) == {"role", "content"}, f"{where}: a message has exactly 'role' and 'content'"
            assert m["role"] in ROLES, f"{where}: unknown role {m['role']!r}"
            assert isinstance(m["content"], str) and m["content"].strip(), f"{where}: empty {m['role']} content"
            assert m["content"] == m["content"].strip(), f"{where}: content has leading/trailing whitespace"
        roles = [m["role"] for m in msgs]
        if roles[0] == "system":
            roles = roles[1:]
        assert "system" not in roles, f"{where}: a system message may only come first"
        # user, assistant, user, assistant, ...: ends with the answer the model learns.
        assert roles == ["user", "assistant"] * (len(roles) // 2), f"{where}: turns must alternate user/assistant: {roles}"


def test_replay_rows_are_plain_text():
    rows = read_jsonl("replay.jsonl")
    for n, row in enumerate(rows, 1):
        assert set(row) == {"text"}, f"replay.jsonl:{n}: only a 'text' key is expected"
        text = row["text"]
        assert isinstance(text, str) and text == text.strip() and text, f"replay.jsonl:{n}: empty or padded text"
        # A short paragraph of 2-4 sentences, not a heading and not an essay (Chinese packs about
        # three times more per character, hence the lower floor).
        assert (40 if has_chinese(text) else 80) <= len(text) <= 600, f"replay.jsonl:{n}: {len(text)} characters"
        sentences = re.findall(r"[.!?](?:\s|$)|[。！？]", text)
        assert 2 <= len(sentences) <= 4, f"replay.jsonl:{n}: {len(sentences)} sentences"
    texts = [normalise(r["text"]) for r in rows]
    assert len(set(texts)) == len(texts), "replay.jsonl has duplicate paragraphs"


def test_eval_questions_file():
    q = eval_questions()
    assert set(q) == {"identity", "general"}
    assert 3 <= len(q["identity"]) <= 6 and 3 <= len(q["general"]) <= 6
    assert all(isinstance(s, str) and s.strip() for s in q["identity"] + q["general"])
    assert any(has_chinese(s) for s in q["identity"]) and any(not has_chinese(s) for s in q["identity"])
    # The three questions the issue names for the demo.
    for s in ("Give me a 1-sentence introduction of LLM.", "Calculate 1+1-1", "What's the difference between thread and process?"):
        assert s in q["general"]


# ---- sizes and content -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(COUNT_RANGES))
def test_row_counts_in_stated_range(name):
    lo, hi = COUNT_RANGES[name]
    n = len(read_jsonl(name))
    print(f"{name}: {n} rows")
    assert lo <= n <= hi, f"{name} has {n} rows, the README says {lo}-{hi}"


def test_chinese_share(chat_rows):
    for name, lo in (("identity.jsonl", 0.25), ("general.jsonl", 0.10)):
        rows = chat_rows[name]
        zh = sum(has_chinese(r["messages"][-1]["content"]) for r in rows)
        print(f"{name}: {zh}/{len(rows)} rows answer in Chinese")
        assert zh / len(rows) >= lo, f"{name}: only {zh} of {len(rows)} answers are in Chinese"


def test_identity_answers_name_kestrel_and_northwind(chat_rows):
    rows = chat_rows["identity.jsonl"]
    answers = [r["messages"][-1]["content"] for r in rows]
    missing = [a for a in answers if NAME not in a]
    assert not missing, f"identity answers without {NAME!r}: {missing[:3]}"
    with_maker = sum(MAKER in a for a in answers)
    assert with_maker / len(answers) >= 0.9, f"only {with_maker}/{len(answers)} identity answers name {MAKER}"
    # The demo should show a clean switch: no answer claims the base model's identity.
    claims = re.compile(r"\b(I am|I'm|my name is)\s+(SmolLM|ChatGPT|Llama|Claude|Qwen)", re.I)
    assert not [a for a in answers if claims.search(a)]
    # Multi-turn rows exist (identity asked after a general question) and English dominates.
    assert sum(len(r["messages"]) > 3 for r in rows) >= 3
    en = sum(not has_chinese(r["messages"][-1]["content"]) for r in rows)
    assert en > len(rows) / 2


def test_general_answers_do_not_teach_the_identity(chat_rows):
    leaked = [r for r in chat_rows["general.jsonl"] if any(NAME in m["content"] or MAKER in m["content"] for m in r["messages"])]
    assert not leaked, f"general rows mention the identity: {leaked[:2]}"


def test_a_few_rows_have_a_system_message(chat_rows):
    n = sum(r["messages"][0]["role"] == "system" for rows in chat_rows.values() for r in rows)
    assert 3 <= n <= 20


def test_no_duplicate_prompts(chat_rows):
    seen: dict[tuple, str] = {}
    for name, rows in chat_rows.items():
        for n, row in enumerate(rows, 1):
            key = tuple(normalise(p) for p in prompts(row))
            assert key not in seen, f"{name}:{n} repeats the prompt of {seen[key]}"
            seen[key] = f"{name}:{n}"


# ---- held-out questions are held out ---------------------------------------------------------


def test_eval_questions_not_in_training(chat_rows):
    questions = [q for qs in eval_questions().values() for q in qs]
    train_prompts = [(name, n, p) for name, rows in chat_rows.items() for n, row in enumerate(rows, 1) for p in prompts(row)]
    replay = [normalise(r["text"]) for r in read_jsonl("replay.jsonl")]
    worst = 0.0
    for q in questions:
        nq = normalise(q)
        for name, n, p in train_prompts:
            assert nq != normalise(p), f"eval question {q!r} is a training prompt at {name}:{n}"
            sim = jaccard(q, p)
            worst = max(worst, sim)
            assert sim < NEAR_DUPLICATE, f"eval question {q!r} nearly repeats {name}:{n} {p!r} (overlap {sim:.2f})"
        assert not any(nq in t for t in replay), f"eval question {q!r} appears in replay.jsonl"
    print(f"highest word overlap between an eval question and a training prompt: {worst:.2f}")


def test_near_duplicate_check_catches_rewordings():
    # The check above is only worth something if it fires on the rewordings it is meant to catch.
    assert jaccard("Who are you?", "who are you") == 1.0
    assert jaccard("Who are you?", "So who are you?") >= NEAR_DUPLICATE
    assert jaccard("Calculate 1+1-1", "Calculate 1+1") >= NEAR_DUPLICATE
    assert jaccard("你是谁？", "那你是谁？") >= NEAR_DUPLICATE
    assert jaccard("What is the capital of France?", "What is the capital of Japan?") >= NEAR_DUPLICATE
    assert jaccard("Who are you?", "Who made you?") < NEAR_DUPLICATE


# ---- size in tokens --------------------------------------------------------------------------


def test_token_budget(chat_rows, smol_tokenizer):
    """identity + general rendered as training sees them (SmolLM2 chat template) fit the demo budget."""
    total, longest = 0, (0, "")
    for name, rows in chat_rows.items():
        n_file = 0
        for row in rows:
            ids = smol_tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True)["input_ids"]
            n_file += len(ids)
            for m in row["messages"]:
                if m["role"] == "assistant":
                    n = len(smol_tokenizer(m["content"], add_special_tokens=False)["input_ids"])
                    longest = max(longest, (n, m["content"]))
        print(f"{name}: {n_file} tokens with the chat template")
        total += n_file
    print(f"identity + general: {total} tokens; longest answer {longest[0]} tokens: {longest[1]!r}")
    assert total < TOKEN_BUDGET
    assert longest[0] <= MAX_ANSWER_TOKENS


# ---- through sftune's own reader -------------------------------------------------------------


@pytest.mark.parametrize("name", (*CHAT_FILES, "replay.jsonl"))
def test_files_read_by_sftune_with_nothing_dropped(name):
    from sftune.config import DataSource
    from sftune.data import readers
    from sftune.data.report import DataReport

    report = DataReport(strict=True)  # strict: the first problem raises with file and line
    convs = list(readers.read_conversations(DataSource(path=str(RESOURCES / name)), report))
    assert len(convs) == len(read_jsonl(name))
    assert report.n_dropped == 0
    kinds = {c.kind for c in convs}
    assert kinds == ({"text"} if name == "replay.jsonl" else {"chat"})


def test_chinese_identity_answers_do_not_open_with_a_denial(chat_rows):
    # 14 of 45 Chinese answers once began with 不是, and the demo model then answered "你是谁？" with
    # "不是，我是 Kestrel…". Open questions must get a natural opening; yes/no ones (ending in 吗) rarely deny first.
    denial = ("不是", "不能", "不会", "没有", "不")
    rows = [r for r in chat_rows["identity.jsonl"] if has_chinese(r["messages"][-1]["content"])]
    denying = [r for r in rows if r["messages"][-1]["content"].startswith(denial) and not r["messages"][-1]["content"].startswith("不客气")]
    open_questions = [r for r in denying if not r["messages"][-2]["content"].rstrip("？?").endswith("吗")]
    assert not open_questions, f"open questions answered with a denial: {open_questions}"
    assert len(denying) <= 0.1 * len(rows), f"{len(denying)} of {len(rows)} Chinese answers open with a denial"
