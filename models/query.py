"""What the query service is asked and what it answers: request bodies, the answer, its errors.

The request bodies are pydantic models because HTTP, MCP and the CLI all take
them from outside: the bounds are checked here once (lengths, ``k``, the
number of history turns, tiers, a time range that is not backwards, no
unknown fields), so every entry point refuses the same input with the same
message. ``user`` names the person only for an operator token; a person's
own token decides who they are, whatever the body says (models/access.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Tier = Literal["micro", "medium", "macro"]

MAX_QUERY_CHARS = 2_000  # a search is a few words or a question, not a document
MAX_MESSAGE_CHARS = 8_000  # a question may quote a paragraph
MAX_HISTORY_TURNS = 40
MAX_TURN_CHARS = 16_000  # an earlier answer may be long
MAX_CONVERSATION_IDS = 100
MAX_EXPAND_TOKENS = 20_000
MAX_USER_CHARS = 200


class _Body(BaseModel):
    """A request body: unknown fields are an error, not silently ignored (a typo'd filter would
    otherwise search everything)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SearchRequest(_Body):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    k: int = Field(10, ge=1, le=100)
    tiers: list[Tier] | None = Field(None, min_length=1, max_length=3)
    since: datetime | None = None  # on a chunk's newest message, inclusive
    until: datetime | None = None  # exclusive
    conversation_ids: list[str] | None = Field(None, min_length=1, max_length=MAX_CONVERSATION_IDS)
    include_facts: bool = False
    expand_tokens: int | None = Field(None, ge=1, le=MAX_EXPAND_TOKENS)
    user: str | None = Field(None, min_length=1, max_length=MAX_USER_CHARS)

    @model_validator(mode="after")
    def _range_forwards(self) -> "SearchRequest":
        if self.since is not None and self.until is not None and not self.since < self.until:
            raise ValueError("since must be before until")
        return self


class Turn(_Body):
    role: Literal["user", "assistant"]
    content: str = Field(min_length=1, max_length=MAX_TURN_CHARS)


class QueryRequest(_Body):
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    history: list[Turn] = Field(default_factory=list, max_length=MAX_HISTORY_TURNS)
    user: str | None = Field(None, min_length=1, max_length=MAX_USER_CHARS)


@dataclass
class Answer:
    """One answer of the person's assistant (the ``/v1/query`` body).

    ``sources`` are the passages the answer cites, each traceable to its
    messages; ``chunks_used`` counts every passage the prompt held;
    ``method`` is ``llm:<model>`` or ``offline-extractive``.
    """

    response: str
    sources: list[dict[str, Any]]
    chunks_used: int
    method: str
    latency_ms: float
    usage: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"response": self.response, "sources": self.sources, "chunks_used": self.chunks_used,
                "method": self.method, "latency_ms": round(self.latency_ms, 1), "usage": self.usage}


class NoSoulprint(Exception):
    """The person has no soulprint yet (no complete import): HTTP 404."""


class Unavailable(Exception):
    """A provider the answer needs failed (embedding or LLM); the message is one line saying which: HTTP 503."""
