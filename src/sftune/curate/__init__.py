"""Curation: make a training set better before training on it (``sftune curate SUBCOMMAND``).

Each step is one library function over lists of :class:`sftune.data.conversation.Conversation`
that records what it removed, and why, in a :class:`CurateReport`:

>>> from sftune.data.conversation import Conversation, Message
>>> rows = [Conversation.chat([Message("user", "Hi"), Message("assistant", "Hello!")])] * 2
>>> report = CurateReport(command="dedup")
>>> len(dedup_conversations(rows, DedupOptions(), report)), dict(report.dropped)
(1, {'exact_duplicate': 1})
"""

from .best_of_k import BestOfKOptions, RewardModel, best_of_k, best_index
from .decontaminate import DecontamOptions, decontaminate
from .dedup import DedupOptions, dedup_conversations
from .distill import DistillOptions, distill
from .filters import FilterOptions, FilterRules, filter_conversations
from .io import CurateReport, read_sources, write_conversations
from .mix import mix_conversations

__all__ = [
    "BestOfKOptions", "CurateReport", "DecontamOptions", "DedupOptions", "DistillOptions", "FilterOptions", "FilterRules", "RewardModel",
    "best_index", "best_of_k", "decontaminate", "dedup_conversations", "distill", "filter_conversations",
    "mix_conversations", "read_sources", "write_conversations",
]
