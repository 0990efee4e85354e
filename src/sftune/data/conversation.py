"""The one data type in the middle: every input format becomes a :class:`Conversation`.

Readers (``sftune.data.readers``) turn raw rows into conversations; the tokenizer step
(``sftune.data.tokenize``) turns conversations into ``input_ids`` and ``labels``. Nothing
downstream of the readers ever looks at a raw row again.

Three kinds of conversation exist, because they are rendered differently:

- ``chat``: messages rendered through a chat template (Alpaca, ShareGPT, OpenAI messages,
  prompt/completion given as message lists).
- ``completion``: a raw ``prompt`` string followed by a raw ``completion`` string, no template
  (prompt/completion given as strings, the way TRL treats them).
- ``text``: one raw text, trained on every token (continued pre-training, replay data).

>>> c = Conversation.chat([Message("user", "Hi"), Message("assistant", "Hello!")])
>>> [m.role for m in c.messages], c.kind
(['user', 'assistant'], 'chat')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["chat", "completion", "text"]

#: Roles a chat conversation may use. ``tool`` is accepted because OpenAI-style data carries it.
CHAT_ROLES = ("system", "user", "assistant", "tool")


@dataclass
class Message:
    """One message.

    ``trainable`` is the per-message training flag. ``None`` means "decided by the masking
    policy" (assistant turns train under the default policy); ``False`` excludes a message
    even when the policy would train it (e.g. an OpenAI-style ``"weight": 0`` turn); ``True``
    marks the completion side of prompt/completion data.
    """

    role: str
    content: str
    trainable: bool | None = None

    def to_dict(self) -> dict:
        d = {"role": self.role, "content": self.content}
        if self.trainable is not None:
            d["trainable"] = self.trainable
        return d


@dataclass
class Source:
    """Where a conversation came from, so every later message can name file and line."""

    path: str
    line: int | None = None  # 1-based line in the file, when the file has lines
    index: int | None = None  # 0-based row index in the file

    def __str__(self) -> str:
        if self.line is not None:
            return f"{self.path}:{self.line}"
        if self.index is not None:
            return f"{self.path} row {self.index}"
        return self.path


@dataclass
class Conversation:
    """A list of messages plus how to render them. See the module docstring for ``kind``."""

    messages: list[Message]
    kind: Kind = "chat"
    source: Source | None = None
    meta: dict = field(default_factory=dict)

    @classmethod
    def chat(cls, messages: list[Message], source: Source | None = None) -> "Conversation":
        return cls(messages=list(messages), kind="chat", source=source)

    @classmethod
    def completion(cls, prompt: str, completion: str, source: Source | None = None) -> "Conversation":
        return cls(
            messages=[Message("prompt", prompt, False), Message("completion", completion, True)],
            kind="completion",
            source=source,
        )

    @classmethod
    def text(cls, text: str, source: Source | None = None) -> "Conversation":
        return cls(messages=[Message("text", text, True)], kind="text", source=source)

    def to_dict(self) -> dict:
        """The canonical JSON form (what ``sftune curate`` writes): OpenAI-style messages.

        >>> Conversation.text("abc").to_dict()
        {'text': 'abc'}
        >>> Conversation.completion("1+1=", "2").to_dict()
        {'prompt': '1+1=', 'completion': '2'}
        """
        if self.kind == "text":
            return {"text": self.messages[0].content}
        if self.kind == "completion":
            return {"prompt": self.messages[0].content, "completion": self.messages[1].content}
        return {"messages": [m.to_dict() for m in self.messages]}

    @property
    def prompt_messages(self) -> list[Message]:
        """What a model is asked: everything before the last assistant turn, or, for a
        prompt-only conversation (ending in a user turn), every message.

        >>> c = Conversation([Message("user", "a"), Message("assistant", "b"), Message("user", "c")])
        >>> [m.content for m in c.prompt_messages]
        ['a', 'b', 'c']
        >>> [m.content for m in Conversation([Message("user", "a"), Message("assistant", "b")]).prompt_messages]
        ['a']
        """
        if self.messages and self.messages[-1].role != "assistant":
            return list(self.messages)
        last = max((i for i, m in enumerate(self.messages) if m.role == "assistant"), default=len(self.messages))
        return self.messages[:last]
