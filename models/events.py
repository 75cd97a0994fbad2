"""Events: what travels on the topics.

Every event is a versioned ``faust.Record`` serialised as plain JSON, so an
operator can read a topic with the Kafka console tools. A topic that carries
more than one kind of event declares an abstract base with
``allow_blessed_key``: faust then restores the concrete class from the
``__faust.ns`` field it writes into each payload. Namespaces are spelled out
so that moving a class between modules never breaks replay of old messages.
"""

from __future__ import annotations

import time
from typing import List, Optional

import faust
import orjson

from soulprint.models.domain import Conversation, Message


class Event(faust.Record, abstract=True, serializer="json", include_metadata=True, allow_blessed_key=True):
    schema_version: int = 1


# -- imports topic ---------------------------------------------------------


class ImportRequested(Event, namespace="soulprint.ImportRequested"):
    """An upload landed: read this export for this person."""

    job_id: str = ""
    user_id: str = ""
    source_uri: str = ""  # file:// URI (or path) of a .zip, .json or folder
    requested_at: float = 0.0


# -- conversations topic ---------------------------------------------------


class ConversationsEvent(Event, abstract=True):
    job_id: str = ""
    user_id: str = ""


class MessageRecord(faust.Record, serializer="json", include_metadata=False):
    id: str
    role: str
    text: str
    time: Optional[float] = None


class ConversationImported(ConversationsEvent, namespace="soulprint.ConversationImported"):
    """One conversation's active path, normalised to text, in order.

    Inline (``by_reference`` false, schema 1): the messages travel in the
    event. By reference (schema 2): they are too large for an event and wait
    in Postgres (``conversation_payloads``, keyed by job and conversation, as
    ``payload()`` bytes); the event carries no messages. Events from before
    by-reference existed read as inline.
    """

    conversation_id: str = ""
    title: Optional[str] = None
    source: str = "chatgpt"
    created_at: Optional[float] = None
    updated_at: Optional[float] = None
    seq: int = 0  # position in the export, for logs and replay checks
    messages: List[MessageRecord] = []
    by_reference: bool = False
    payload_bytes: int = 0  # size of the stored payload (by reference), for operators

    @classmethod
    def from_domain(cls, job_id: str, user_id: str, seq: int, conv: Conversation,
                    stored: bytes | None = None) -> "ConversationImported":
        """The event for ``conv``; ``stored`` is its payload when the messages were stored instead."""
        return cls(
            job_id=job_id,
            user_id=user_id,
            conversation_id=conv.id,
            title=conv.title,
            source=conv.source,
            created_at=conv.created_at,
            updated_at=conv.updated_at,
            seq=seq,
            messages=[] if stored is not None else [
                MessageRecord(id=m.id, role=m.role, text=m.text, time=m.time) for m in conv.messages],
            by_reference=stored is not None,
            payload_bytes=len(stored) if stored is not None else 0,
            schema_version=2 if stored is not None else 1,
        )

    def to_domain(self, messages: list[Message] | None = None) -> Conversation:
        """The conversation; by reference, ``messages`` are the ones loaded from its payload."""
        return Conversation(
            id=self.conversation_id,
            title=self.title,
            created_at=self.created_at,
            updated_at=self.updated_at,
            source=self.source,
            messages=messages if messages is not None else [_message(m) for m in self.messages],
        )


def _message(m) -> Message:
    # Nested records arrive as dicts when the payload came from another
    # producer (console tools, an older worker), as records otherwise.
    if isinstance(m, dict):
        return Message(id=m["id"], role=m["role"], text=m["text"], time=m.get("time"))
    return Message(id=m.id, role=m.role, text=m.text, time=m.time)


# -- conversations too large for an event ----------------------------------
#
# A payload is the messages as compact JSON lists, [[id, role, text, time], ...]
# (lists: a tenth of a dict's memory per message when loaded). The same
# messages inline are records, {"id":..,"role":..,"text":..,"time":..}: the
# payload's bytes plus the four keys per message, exactly (orjson both ways).
_RECORD_KEYS = len(b'"id":"role":"text":"time":')
# No character takes more than 6 bytes in JSON (an escaped control character).
_MAX_CHAR_BYTES = 6
_MAX_MESSAGE_OVERHEAD = _RECORD_KEYS + 64  # brackets, quotes, commas, role, a float time


def payload(conv: Conversation) -> bytes:
    """The messages of ``conv`` as stored by reference."""
    return orjson.dumps([[m.id, m.role, m.text, m.time] for m in conv.messages])


def messages_from_payload(data: bytes) -> list[Message]:
    return [Message(mid, role, text, t) for mid, role, text, t in orjson.loads(data)]


def inline_bytes_bound(conv: Conversation) -> int:
    """An upper bound of the bytes ``conv``'s messages take inline in an event, without serialising."""
    chars = 0
    for m in conv.messages:
        chars += len(m.text) + len(m.id)
    return chars * _MAX_CHAR_BYTES + len(conv.messages) * _MAX_MESSAGE_OVERHEAD


def inline_bytes(conv: Conversation, stored: bytes) -> int:
    """The bytes ``conv``'s messages take inline in an event, exactly, from its payload."""
    return len(stored) + _RECORD_KEYS * len(conv.messages)


class IngestCompleted(ConversationsEvent, namespace="soulprint.IngestCompleted"):
    """The export has been read to the end: the totals later stages count towards."""

    conversations: int = 0
    messages: int = 0
    excluded: int = 0
    empty: int = 0
    newest_message_time: Optional[float] = None


# -- chunks topic ----------------------------------------------------------


class ChunkRef(faust.Record, serializer="json", include_metadata=False):
    chunk_id: str
    tier: str
    token_count: int


class ChunksEvent(Event, abstract=True):
    job_id: str = ""
    user_id: str = ""


class ConversationChunked(ChunksEvent, namespace="soulprint.ConversationChunked"):
    """A conversation's chunks are in Postgres; downstream reads them from there."""
    conversation_id: str = ""
    chunks: List[ChunkRef] = []


class SmallConversationsReady(ChunksEvent, namespace="soulprint.SmallConversationsReady"):
    """The job's chunking is complete (or its extraction was re-driven): its small conversations
    still without facts can be packed together (domain/facts.py, pack_small_conversations)."""



def now() -> float:
    return time.time()


# -- quick topic -----------------------------------------------------------


class QuickPassRequested(Event, namespace="soulprint.QuickPassRequested"):
    """Ingest's sample of the person's richest conversations, for the quick soulprint."""

    job_id: str = ""
    user_id: str = ""
    samples: List[dict] = []  # SampledConversation fields (title, excerpt, created_at, ...)
    profile: dict = {}  # custom instructions and saved memory
    conversations: int = 0


# -- sections topic --------------------------------------------------------


class SectionsPublished(Event, namespace="soulprint.SectionsPublished"):
    """A new soulprint version is stored and readable; the query service takes it into its view.

    ``sections``: the five documents by name ("SOUL", "IDENTITY", "USER",
    "AGENTS", "TOOLS") -> markdown; empty in events from before it existed.
    """

    job_id: str = ""
    user_id: str = ""
    version: int = 1
    offline: bool = False
    soulprint_text: str = ""
    sections: dict = {}


# -- facts, consolidated and memory topics ---------------------------------


class FullPassEvent(Event, abstract=True):
    job_id: str = ""
    user_id: str = ""


class FactsExtracted(FullPassEvent, namespace="soulprint.FactsExtracted"):
    """Every extraction chunk of the job has its facts (counted in Postgres): consolidate."""

    facts: int = 0


class FactsConsolidated(FullPassEvent, namespace="soulprint.FactsConsolidated"):
    """The job's facts are merged into one current picture: write MEMORY."""

    consolidated: int = 0


class MemoryWritten(FullPassEvent, namespace="soulprint.MemoryWritten"):
    """MEMORY is stored: rewrite the five sections as version 2."""

    offline: bool = False
    memory_md: str = ""


# -- notices topic ---------------------------------------------------------


class JobNotice(Event, namespace="soulprint.JobNotice"):
    """Something a person's webhooks are told: a row of the `notices` outbox, published by its relay.

    ``type``: soulprint.quick_ready, soulprint.complete, soulprint.failed or
    person.deleted. ``data`` holds ids and statuses only, never a person's text.
    """

    notice_id: str = ""
    type: str = ""
    user_id: str = ""
    job_id: Optional[str] = None
    data: dict = {}
    created_at: float = 0.0
