"""Retrieval logic with no I/O: the full-text query, reciprocal-rank fusion, the response.

Full text: chunks are indexed with the `simple` configuration (names, dates
and words of every language stay as written; migration 0006). A question in
English would miss inflected forms and be drowned by stop words, so the query
side is language-aware instead: each word the `simple` parser finds is kept
as written, OR'd with its English stem as a prefix (``'moving' | 'move':*``
matches "moved" and "moves"), and English stop words are dropped. The terms
are OR'd, not AND'ed: a question rarely has every one of its words in one
micro chunk, and ``ts_rank_cd`` ranks chunks that match more of them first.

Fusion: reciprocal rank (``sum 1 / (K + rank)`` over the retrievers that
returned a chunk; K = 60, the usual constant), which needs no score
calibration between a text rank and a cosine distance.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Sequence

RRF_K = 60
RETRIEVERS = ("full_text", "vector")


def tsquery_text(words: Sequence[tuple[str, str | None]]) -> str:
    """The `to_tsquery('simple', …)` text for (word as parsed by `simple`, its English stem or
    None for a stop word) pairs; '' when nothing is left to search for."""
    terms: list[str] = []
    for word, stem in words:
        if not stem:
            continue
        term = _quoted(word)
        if stem != word:
            term = f"({term} | {_quoted(stem)}:*)"
        if term not in terms:
            terms.append(term)
    return " | ".join(terms)


def _quoted(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass(frozen=True)
class Candidate:
    """One chunk a retriever returned, in its rank order (1 = best)."""

    chunk_id: str
    conversation_id: str
    title: str | None
    message_ids: list[str]
    tier: str
    message_at: datetime | None
    tokens: int
    text: str


@dataclass(frozen=True)
class Hit(Candidate):
    """A candidate as the search returns it: its fused score and its rank in each retriever."""

    score: float = 0.0
    ranks: dict[str, int | None] = field(default_factory=dict)  # None: that retriever did not return it

    @classmethod
    def of(cls, c: Candidate, score: float, ranks: dict[str, int | None]) -> "Hit":
        return cls(**{f.name: getattr(c, f.name) for f in fields(Candidate)}, score=score, ranks=ranks)

    def to_json(self) -> dict:
        return {"chunk_id": self.chunk_id, "conversation_id": self.conversation_id, "title": self.title,
                "message_ids": self.message_ids, "tier": self.tier,
                "message_at": self.message_at.isoformat() if self.message_at else None,
                "score": round(self.score, 6), "ranks": self.ranks, "tokens": self.tokens, "text": self.text}


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    k: int
    candidates: dict[str, int]  # how many chunks each retriever produced
    job_id: str | None  # the person's current import searched (None: the person has none)
    space: str | None  # the embedding space of the vector side
    notes: list[str] = field(default_factory=list)  # why a retriever found nothing, said out loud

    @property
    def fewer_than_k(self) -> bool:
        return len(self.hits) < self.k

    def to_json(self) -> dict:
        return {"hits": [h.to_json() for h in self.hits],
                "stats": {"k": self.k, "returned": len(self.hits), "fewer_than_k": self.fewer_than_k,
                          "candidates": self.candidates, "job_id": self.job_id, "space": self.space,
                          "notes": self.notes}}


def fuse(rankings: dict[str, Sequence[Candidate]], k: int) -> list[Hit]:
    """Reciprocal-rank fusion of each retriever's ranked candidates; the best ``k``.

    Ties (equal score) go to the chunk with the better best rank, then to the retriever
    listed first: a total order that does not depend on chunk ids.
    """
    by_id: dict[str, Candidate] = {}
    ranks: dict[str, dict[str, int | None]] = {}
    for name, candidates in rankings.items():
        for rank, c in enumerate(candidates, start=1):
            by_id.setdefault(c.chunk_id, c)
            ranks.setdefault(c.chunk_id, dict.fromkeys(rankings, None))[name] = rank
    order = list(rankings)
    scored = []
    for chunk_id, r in ranks.items():
        score = sum(1.0 / (RRF_K + n) for n in r.values() if n is not None)
        best = min((n, order.index(name)) for name, n in r.items() if n is not None)
        scored.append((-score, best, chunk_id))
    scored.sort()
    hits = []
    for neg, _, chunk_id in scored[:k]:
        hits.append(Hit.of(by_id[chunk_id], -neg, ranks[chunk_id]))
    return hits


def single(name: str, rankings: dict[str, Sequence[Candidate]], k: int) -> list[Hit]:
    """One retriever's own ranking as hits (what fusion is measured against)."""
    return fuse({name: rankings[name]}, k)
