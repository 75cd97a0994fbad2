"""Facts of the full pass: what one chunk says about the person, and the merged picture.

A :class:`Fact` is one durable statement an LLM read in one medium chunk. The
facts of a job are merged (domain/consolidation.py) into
:class:`ConsolidatedFact` records: one per thing-about-the-person, with how
often and when it was said and what it replaced. Both are plain dataclasses
with ``to_dict``/``from_dict`` for events and JSONB columns.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, get_args

# The one definition of the categories: prompts, answer models, consolidation
# and MEMORY's headings all derive from it.
FactCategory = Literal["preferences", "projects", "dates", "beliefs", "decisions"]
FACT_CATEGORIES: tuple[str, ...] = get_args(FactCategory)

# Fixed namespace for fact ids. Never change it: the facts writer replaces a
# chunk's facts by id, so re-extracting a chunk must give the same ids.
FACT_NAMESPACE = uuid.UUID("5b1c7e0a-3f7d-4f55-9a57-2f0d8c6e4b91")
# And one for consolidated keys, which only need to be stable across runs.
CONSOLIDATED_NAMESPACE = uuid.UUID("a4e3f1d2-8c0b-4b6e-93f5-1d7a2c9e6b30")

# Cap on ConsolidatedFact.sources: a preference said in 400 conversations does
# not need 400 pointers to prove it, and the row must stay small.
MAX_SOURCES = 20
# Cap on ConsolidatedFact.history: superseded statements, most recent kept.
MAX_HISTORY = 10


def fact_id(chunk_id: str, ordinal: int) -> str:
    """Deterministic id of the ``ordinal``-th fact read from ``chunk_id``."""
    return str(uuid.uuid5(FACT_NAMESPACE, f"{chunk_id}\x1f{ordinal}"))


def consolidated_key(category: str, subject: str) -> str:
    """Stable key of a consolidated fact: one per (category, normalised subject)."""
    return str(uuid.uuid5(CONSOLIDATED_NAMESPACE, f"{category}\x1f{subject}"))


def _opt_str(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v).strip()
    return s or None


def _opt_float(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


@dataclass(slots=True)
class Fact:
    """One durable statement about the person, read from one chunk."""

    fact_id: str
    user_id: str
    job_id: str
    chunk_id: str
    conversation_id: str
    message_ids: list[str]  # the chunk's messages: extraction cannot localise further
    category: str  # one of FACT_CATEGORIES
    text: str  # one clear sentence
    subject: str  # normalised key of what it is about ("home city", "harbor: database")
    project: str | None = None
    date: str | None = None  # ISO date or partial ("2025-09")
    context: str | None = None
    message_time: float | None = None  # unix seconds of the source chunk's newest message
    ordinal: int = 0  # position among the chunk's facts

    def to_dict(self) -> dict[str, Any]:
        return {
            "fact_id": self.fact_id, "user_id": self.user_id, "job_id": self.job_id, "chunk_id": self.chunk_id,
            "conversation_id": self.conversation_id, "message_ids": list(self.message_ids),
            "category": self.category, "text": self.text, "subject": self.subject, "project": self.project,
            "date": self.date, "context": self.context, "message_time": self.message_time,
            "ordinal": self.ordinal,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Fact":
        return cls(
            fact_id=str(d["fact_id"]), user_id=str(d.get("user_id") or ""), job_id=str(d.get("job_id") or ""),
            chunk_id=str(d.get("chunk_id") or ""), conversation_id=str(d.get("conversation_id") or ""),
            message_ids=[str(m) for m in d.get("message_ids") or ()], category=str(d.get("category") or ""),
            text=str(d.get("text") or ""), subject=str(d.get("subject") or ""), project=_opt_str(d.get("project")),
            date=_opt_str(d.get("date")), context=_opt_str(d.get("context")),
            message_time=_opt_float(d.get("message_time")), ordinal=int(d.get("ordinal") or 0),
        )


@dataclass(slots=True)
class ConsolidatedFact:
    """The current truth about one thing, merged from every fact that stated it.

    mentions: distinct conversations in which the current statement was made.
    Counting facts instead would inflate it: overlapping medium chunks repeat
    the same sentence, and so does a long thread that comes back to it.
    first_seen/last_seen: when the current statement was first and last made.
    sources: where it was read, newest first, at most MAX_SOURCES.
    history: statements it superseded, oldest first, each with the period it
    held: {"text", "from", "until"} (unix seconds or None).
    """

    key: str
    category: str
    text: str
    subject: str
    project: str | None = None
    date: str | None = None
    context: str | None = None
    mentions: int = 1
    first_seen: float | None = None
    last_seen: float | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key, "category": self.category, "text": self.text, "subject": self.subject,
            "project": self.project, "date": self.date, "context": self.context, "mentions": self.mentions,
            "first_seen": self.first_seen, "last_seen": self.last_seen,
            "sources": [{"chunk_id": s.get("chunk_id"), "conversation_id": s.get("conversation_id"),
                         "message_ids": list(s.get("message_ids") or ())} for s in self.sources],
            "history": [{"text": h.get("text"), "from": h.get("from"), "until": h.get("until")}
                        for h in self.history],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ConsolidatedFact":
        category = str(d.get("category") or "")
        subject = str(d.get("subject") or "")
        return cls(
            key=str(d.get("key") or consolidated_key(category, subject)), category=category,
            text=str(d.get("text") or ""), subject=subject, project=_opt_str(d.get("project")),
            date=_opt_str(d.get("date")), context=_opt_str(d.get("context")),
            mentions=max(1, int(d.get("mentions") or 1)), first_seen=_opt_float(d.get("first_seen")),
            last_seen=_opt_float(d.get("last_seen")),
            sources=[{"chunk_id": str(s.get("chunk_id") or ""), "conversation_id": str(s.get("conversation_id") or ""),
                      "message_ids": [str(m) for m in s.get("message_ids") or ()]}
                     for s in d.get("sources") or () if isinstance(s, Mapping)],
            history=[{"text": str(h.get("text") or ""), "from": _opt_float(h.get("from")),
                      "until": _opt_float(h.get("until"))}
                     for h in d.get("history") or () if isinstance(h, Mapping)],
        )
