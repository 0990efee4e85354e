"""Mask policies: which messages of a conversation are trained, decided on conversations.

This is the step between the readers and the tokenizer: it looks at roles and the per-message
``trainable`` flags only, never at text or tokens, and names the messages whose tokens get
labels. The tokenizer (``sftune.data.tokenize``) then finds those messages' characters in the
rendered text and turns them into ``labels``.

Policies (``--mask``):

- ``assistant``: every assistant turn (the default);
- ``last``: the last assistant turn only (earlier answers are context);
- ``completion``: the turns a reader flagged as the completion (prompt/completion data given as
  message lists); every assistant turn when none is flagged;
- ``all``: every message, and the tokenizer also trains the template's own tokens.

A message flagged ``trainable=False`` (OpenAI-style ``"weight": 0``) is never trained, whatever
the policy but ``all``.

>>> from sftune.data.conversation import Conversation, Message
>>> c = Conversation.chat([Message("user", "Hi"), Message("assistant", "Hello!"),
...                        Message("user", "And?"), Message("assistant", "Bye.", trainable=False),
...                        Message("user", "Again?"), Message("assistant", "Yes.")])
>>> [trained_messages(c, p) for p in MASK_POLICIES]
[[1, 5], [5], [1, 5], [0, 1, 2, 3, 4, 5]]
"""

from __future__ import annotations

from .conversation import Conversation

#: The mask policies, in the order ``--help`` lists them.
MASK_POLICIES = ("assistant", "last", "completion", "all")


def check_mask_policy(policy: str) -> str:
    """Return ``policy`` if it is one of :data:`MASK_POLICIES`, else raise ``ValueError`` with the choices.

    >>> check_mask_policy("last")
    'last'
    >>> check_mask_policy("assistants")
    Traceback (most recent call last):
    ...
    ValueError: unknown mask policy 'assistants'; use assistant, last, completion or all
    """
    if policy not in MASK_POLICIES:
        raise ValueError(f"unknown mask policy {policy!r}; use {', '.join(MASK_POLICIES[:-1])} or {MASK_POLICIES[-1]}")
    return policy


def trained_messages(conv: Conversation, policy: str) -> list[int]:
    """Indices of the messages of ``conv`` whose tokens ``policy`` trains, in order.

    ``completion`` and ``text`` conversations (raw strings, no template) train their
    completion or their text under every policy, and the prompt too under ``all``.

    >>> from sftune.data.conversation import Conversation, Message
    >>> flagged = Conversation.chat([Message("user", "1+1?"), Message("assistant", "Let me think."),
    ...                              Message("assistant", "2", trainable=True)])
    >>> trained_messages(flagged, "completion"), trained_messages(flagged, "assistant")
    ([2], [1, 2])
    >>> trained_messages(Conversation.completion("1+1=", "2"), "assistant")
    [1]
    >>> trained_messages(Conversation.completion("1+1=", "2"), "all")
    [0, 1]
    """
    if policy == "all":
        return list(range(len(conv.messages)))
    if conv.kind != "chat":
        return [i for i, m in enumerate(conv.messages) if m.trainable]
    assistant = [i for i, m in enumerate(conv.messages) if m.role == "assistant"]
    if policy == "last":
        chosen = assistant[-1:]
    else:
        flagged = [i for i in assistant if conv.messages[i].trainable is True]
        chosen = flagged if (policy == "completion" and flagged) else assistant
    return [i for i in chosen if conv.messages[i].trainable is not False]
