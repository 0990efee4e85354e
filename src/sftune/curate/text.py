"""The text views of a conversation that curation rules compare, and how text is cut into words.

Every rule looks at the same few views, so they are defined once here:

- ``answer_text``: what the model is trained to say (the last assistant turn, the completion,
  or the whole text of a ``text`` row);
- ``prompt_text``: what it is asked (every non-system message before the last assistant turn;
  system prompts are left out because many rows share the same boilerplate one);
- ``full_text``: prompt and answer together, with role tags, the key for deduplication.

Words: runs of letters/digits, except that each CJK ideograph, kana and Hangul syllable is a word
of its own, so n-gram rules work on Chinese and Japanese (which have no spaces) as well:

>>> words("Hello, world! 你好世界")
['hello', 'world', '你', '好', '世', '界']
>>> normalize("  Hello,   WORLD!! ")
'hello world'
"""

from __future__ import annotations

import re
import unicodedata

from ..data.conversation import Conversation

# CJK ideographs (incl. extension A and compatibility), kana, Hangul syllables and jamo.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u1100-\u11ff"
_WORD = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")
_SPACE = re.compile(r"\s+")


def answer_text(conv: Conversation) -> str | None:
    """The trained answer; ``None`` when a chat row has no assistant turn (a prompt-only row)."""
    if conv.kind == "chat":
        for m in reversed(conv.messages):
            if m.role == "assistant":
                return m.content
        return None
    return conv.messages[-1].content


def prompt_text(conv: Conversation) -> str:
    """Non-system messages before the last assistant turn, joined by newlines ('' for ``text`` rows)."""
    if conv.kind == "text":
        return ""
    if conv.kind == "completion":
        return conv.messages[0].content
    return "\n".join(m.content for m in conv.prompt_messages if m.role != "system")


def last_user_text(conv: Conversation) -> str:
    """The message the answer replies to (the last user turn before the answer, or the raw prompt)."""
    if conv.kind == "completion":
        return conv.messages[0].content
    for m in reversed(conv.prompt_messages):
        if m.role == "user":
            return m.content
    return ""


def full_text(conv: Conversation) -> str:
    """All messages with their roles: two rows with the same text under different roles differ."""
    return "\n".join(f"<{m.role}> {m.content}" for m in conv.messages)


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch)[0] == "P"


_PUNCT_TABLE: dict[int, str] = {}


def normalize(text: str) -> str:
    """Casefold, drop punctuation (Unicode category P*), collapse whitespace. Used for exact dedup."""
    text = text.casefold()
    # Build the punctuation table lazily for the characters seen: str.translate is fast, and the
    # table stays small (only characters that actually occurred are in it).
    for ch in set(text):
        o = ord(ch)
        if o not in _PUNCT_TABLE and _is_punct(ch):
            _PUNCT_TABLE[o] = " "
    return _SPACE.sub(" ", text.translate(_PUNCT_TABLE)).strip()


def words(text: str) -> list[str]:
    """Casefolded words; each CJK character counts as one word (see the module docstring)."""
    return _WORD.findall(text.casefold())


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    """All contiguous n-grams, in order.

    >>> ngrams(["a", "b", "c"], 2)
    [('a', 'b'), ('b', 'c')]
    """
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def strip_code_blocks(text: str) -> str:
    """The text with fenced code blocks (```...```) removed; an unclosed fence removes the rest."""
    return re.sub(r"```.*?(```|\Z)", " ", text, flags=re.S)
