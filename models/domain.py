"""Domain records: what an export *means*, independent of Kafka and Postgres.

Plain slotted dataclasses: the parser creates millions of ``Message`` objects
on a large export, so they stay cheap. Events (models/events.py) are built from
these at the edge of an agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Message:
    """One turn on a conversation's active path, already normalised to text."""

    id: str  # the export's own message id (ChatGPT node id, claude.ai uuid)
    role: str  # "user" | "assistant" | "tool" | "system"
    text: str
    time: float | None  # unix seconds (exports in milliseconds are converted)


@dataclass(slots=True)
class Conversation:
    id: str
    title: str | None
    created_at: float | None
    updated_at: float | None
    source: str  # "chatgpt" | "claude"
    messages: list[Message] = field(default_factory=list)

    @property
    def newest_time(self) -> float | None:
        """Newest message time; the conversation's own times when no message has one."""
        newest = None
        for m in self.messages:  # a plain loop: the parser calls this per conversation
            t = m.time
            if t is not None and (newest is None or t > newest):
                newest = t
        return newest if newest is not None else (self.updated_at or self.created_at)


@dataclass(slots=True)
class ProfileHints:
    """What the person told the assistant about themselves outside the chat turns.

    ChatGPT's custom instructions (``user_editable_context``) and its saved
    memory (``model_editable_context``). Hints for the quick pass, not content.
    """

    user_profile: str | None = None
    user_instructions: str | None = None
    saved_memory: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.user_profile or self.user_instructions or self.saved_memory)


@dataclass(slots=True)
class ExportSummary:
    """Totals known once the whole export has been read."""

    format: str = ""  # "chatgpt" | "chatgpt-split" | "claude"
    conversations: int = 0  # emitted (have at least one message)
    messages: int = 0
    excluded: int = 0  # flagged is_do_not_remember, left out on purpose
    empty: int = 0  # no content on the active path
    hidden_messages: int = 0  # skipped because hidden from the conversation
    bytes_read: int = 0  # uncompressed JSON bytes parsed
    # NUL characters ("\u0000" in the JSON) removed from the texts emitted
    # (message texts, ids, titles) and from profile hints (counted as read, so
    # a hint repeated in many conversations may count more than once).
    # Postgres text cannot hold them.
    nul_stripped: int = 0
    # Lone UTF-16 surrogates ("\ud800" in the JSON with no partner) replaced
    # with U+FFFD: they are not characters, and no encoder (UTF-8 for
    # Postgres, Kafka) can write them.
    surrogates_replaced: int = 0
    newest_message_time: float | None = None


@dataclass(slots=True)
class Chunk:
    """A retrievable slice of one conversation (never spans two)."""

    id: str  # deterministic: uuid5 of user, conversation, tier and index
    conversation_id: str
    tier: str  # "micro" | "medium" | "macro"
    index: int
    content: str
    token_count: int
    message_ids: list[str]
    newest_time: float | None  # newest message covered; decides is_recent


TIERS = ("micro", "medium", "macro")
