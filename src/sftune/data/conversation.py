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

from .toolcalls import OBJECT_FORM, CallForm, with_call_ids

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

    Agent and reasoning data (all optional; ``None`` = the data has no such key, and the key
    then stays absent from what the template sees):

    - ``tool_calls``: an assistant turn's calls in OpenAI form (:mod:`sftune.data.toolcalls`),
      ``arguments`` as the data had them (a JSON string or an object);
    - ``tool_call_id`` and ``name``: which call a ``tool`` message answers;
    - ``reasoning``: the assistant's reasoning trace (``reasoning_content``; read from the keys
      ``reasoning_content``, ``reasoning`` or ``thinking``);
    - ``content_null``: the data had ``"content": null`` (a turn that only calls tools);
      ``content`` is then ``""`` so text-level code keeps working, and templates get ``None``;
    - ``extra``: any other keys of the data's message, handed to the template unchanged.
    """

    role: str
    content: str
    trainable: bool | None = None
    tool_calls: list[dict] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    reasoning: str | None = None
    content_null: bool = False
    extra: dict | None = None

    def _as_dict(self, tool_calls: list | None) -> dict:
        """The keys both dict forms share, in their order, with ``tool_calls`` as the caller made them.

        >>> Message("tool", "21", tool_call_id="c1", extra={"lang": "en"})._as_dict(None)
        {'role': 'tool', 'content': '21', 'tool_call_id': 'c1', 'lang': 'en'}
        """
        d = {"role": self.role, "content": None if self.content_null else self.content}
        for key, value in (("tool_calls", tool_calls), ("tool_call_id", self.tool_call_id), ("name", self.name),
                           ("reasoning_content", self.reasoning)):
            if value is not None:
                d[key] = value
        if self.extra:  # keys sftune does not model travel as they came, never over a modelled one
            d.update({k: v for k, v in self.extra.items() if k not in d})
        return d

    def to_template(self, form: CallForm = OBJECT_FORM) -> dict:
        """The dict a chat template gets for this message (see :meth:`Conversation.to_messages`);
        ``form``: how the template takes tool calls (:func:`~sftune.data.toolcalls.template_call_form`).

        >>> Message("assistant", "", tool_calls=[{"type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}],
        ...         content_null=True).to_template()
        {'role': 'assistant', 'content': None, 'tool_calls': [{'type': 'function', 'function': {'name': 'f', 'arguments': {'a': 1}}}]}
        """
        return form.message(self._as_dict(self.tool_calls))

    def to_dict(self) -> dict:
        """Canonical JSON (what ``sftune curate`` writes): every key the data had, arguments as given.

        >>> Message("tool", "21", tool_call_id="c1", name="weather").to_dict()
        {'role': 'tool', 'content': '21', 'tool_call_id': 'c1', 'name': 'weather'}
        """
        d = self._as_dict(self.tool_calls)
        if self.trainable is not None:
            d["trainable"] = self.trainable
        return d

    @property
    def is_plain(self) -> bool:
        """Role and text only: what the shape-rendering shortcut (``sftune.data.shapes``) handles."""
        return (
            self.tool_calls is None and self.tool_call_id is None and self.name is None
            and self.reasoning is None and not self.content_null and not self.extra
        )


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
    tools: list[dict] | None = None  # tool schemas in OpenAI form (sftune.data.toolcalls.normalize_tools)

    @classmethod
    def chat(cls, messages: list[Message], source: Source | None = None, tools: list[dict] | None = None) -> "Conversation":
        return cls(messages=list(messages), kind="chat", source=source, tools=tools or None)

    def to_messages(self, form: CallForm = OBJECT_FORM) -> list[dict]:
        """The messages exactly as a chat template gets them, in training and at inference:
        ``apply_chat_template(conv.to_messages(form), tools=conv.tools, **template_kwargs)``, where
        ``form`` is :func:`~sftune.data.toolcalls.template_call_form` of the template.

        A key the data lacks stays absent (templates test ``is defined``/``in message``);
        ``content`` is ``None`` where the data had null (transformers then drops the key, as it
        does for an inference request); tool-call ``arguments`` are mappings
        (:func:`~sftune.data.toolcalls.tool_calls_for_template`; JSON text, and ``""`` for a null
        content, for the templates whose :class:`~sftune.data.toolcalls.CallForm` says so); reasoning is under
        ``reasoning_content`` (transformers also copies it to ``thinking`` for gpt-oss templates).

        >>> c = Conversation.chat([Message("user", "Hi"), Message("assistant", "Hello", reasoning="greet")])
        >>> c.to_messages()
        [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello', 'reasoning_content': 'greet'}]
        """
        msgs = [m.to_template(form) for m in self.messages]
        return with_call_ids(msgs, str(self.source or "")) if form.ids else msgs

    @property
    def is_plain(self) -> bool:
        """No tools, tool calls or reasoning: every message is a role and a text."""
        return not self.tools and all(m.is_plain for m in self.messages)

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
        d = {"messages": [m.to_dict() for m in self.messages]}
        if self.tools:
            d["tools"] = self.tools
        return d

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
