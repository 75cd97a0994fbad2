"""Hybrid search over one person's current import: full text, exact vectors, fusion.

Every query is scoped twice: ``user_id = $1`` and ``job_id =`` the person's
current import (people.current_job_id), so no filter can reach another
person's rows. The vector side is exact: it orders by ``embedding <=>
$q::vector`` without the HNSW index's cast, so Postgres scans the person's
vectors (the key's (job_id, …) prefix) instead of walking a graph of everyone's
and filtering afterwards, which can return fewer than k for one person's
scope. Ranking and fusion are domain/retrieval.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

import asyncpg
import orjson

from soulprint.domain.retrieval import Candidate, SearchResult, fuse, tsquery_text
from soulprint.models.embedding import EmbeddingSpace


@dataclass(frozen=True)
class Filters:
    tiers: Sequence[str] | None = None  # None: every tier
    since: datetime | None = None  # on the chunk's newest message
    until: datetime | None = None
    conversation_ids: Sequence[str] | None = None


# $1 user, $2 job, $3 tiers, $4 since, $5 until, $6 conversations; the retriever's own from $7.
_SCOPE = """k.user_id = $1 AND k.job_id = $2
   AND ($3::text[] IS NULL OR k.tier = ANY($3::text[]))
   AND ($4::timestamptz IS NULL OR k.message_at >= $4)
   AND ($5::timestamptz IS NULL OR k.message_at < $5)
   AND ($6::text[] IS NULL OR k.conversation_id = ANY($6::text[]))"""

_COLUMNS = """k.chunk_id::text AS chunk_id, k.conversation_id, k.conversation_title, k.message_ids, k.tier,
       k.message_at, k.token_count, k.content"""


def _candidate(r: asyncpg.Record) -> Candidate:
    return Candidate(r["chunk_id"], r["conversation_id"], r["conversation_title"], list(r["message_ids"]),
                     r["tier"], r["message_at"], r["token_count"], r["content"])


class Search:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def search(self, user_id: str, query: str, query_vector: Sequence[float] | None,
                     space: EmbeddingSpace | None, k: int, filters: Filters = Filters(),
                     depth: int | None = None) -> tuple[SearchResult, dict[str, list[Candidate]]]:
        """The fused top ``k`` and each retriever's candidates (``depth`` each, default 4k, at least 50).

        Ties within a retriever go to the newer chunk, then conversation and position: an order
        of the person's content, not of ids (chunk ids differ between people with the same text).
        """
        depth = depth or max(4 * k, 50)
        async with self.pool.acquire() as conn:
            job = await conn.fetchrow(
                "SELECT p.current_job_id, j.embedding_model FROM people p"
                " JOIN import_jobs j ON j.job_id = p.current_job_id WHERE p.user_id = $1",
                user_id,
            )
            if job is None:
                empty = {"full_text": [], "vector": []}
                return SearchResult([], k, {"full_text": 0, "vector": 0}, None, None,
                                    [f"{user_id} has no complete import"]), empty
            job_id, notes = job["current_job_id"], []
            scope = (user_id, job_id, list(filters.tiers) if filters.tiers else None, filters.since, filters.until,
                     list(filters.conversation_ids) if filters.conversation_ids else None)
            full_text = await self._full_text(conn, scope, query, depth, notes)
            vector = await self._vector(conn, scope, query_vector, space, depth, notes)
        rankings = {"full_text": full_text, "vector": vector}
        result = SearchResult(fuse(rankings, k), k, {n: len(c) for n, c in rankings.items()}, job_id,
                              space.space_id if space else None, notes)
        return result, rankings

    async def _full_text(self, conn, scope: tuple, query: str, depth: int, notes: list[str]) -> list[Candidate]:
        words = await conn.fetch(
            "SELECT w.lexeme AS word, (SELECT string_agg(e.lexeme, ' ') FROM unnest(to_tsvector('english', w.lexeme))"
            " AS e) AS stem FROM unnest(to_tsvector('simple', $1)) AS w",
            query,
        )
        text = tsquery_text([(r["word"], r["stem"]) for r in words])
        if not text:
            notes.append("full text: the query has no searchable word")
            return []
        rows = await conn.fetch(
            f"""
            SELECT {_COLUMNS}, ts_rank_cd(k.content_tsv, q) AS rank
              FROM conversation_chunks k, to_tsquery('simple', $7) AS q
             WHERE {_SCOPE} AND k.content_tsv @@ q
             ORDER BY rank DESC, k.message_at DESC NULLS LAST, k.conversation_id, k.tier, k.chunk_index
             LIMIT $8
            """,
            *scope, text, depth,
        )
        return [_candidate(r) for r in rows]

    async def _vector(self, conn, scope: tuple, query_vector: Sequence[float] | None, space: EmbeddingSpace | None,
                      depth: int, notes: list[str]) -> list[Candidate]:
        if query_vector is None or space is None:
            notes.append("vector: no query embedding")
            return []
        rows = await conn.fetch(
            f"""
            SELECT {_COLUMNS}
              FROM chunk_embeddings e
              JOIN conversation_chunks k ON k.job_id = e.job_id AND k.chunk_id = e.chunk_id
             WHERE {_SCOPE} AND e.job_id = $2 AND e.model = $7
             ORDER BY e.embedding <=> $8::vector, k.message_at DESC NULLS LAST, k.conversation_id, k.tier, k.chunk_index
             LIMIT $9
            """,
            *scope, space.space_id, orjson.dumps(list(query_vector)).decode(), depth,
        )
        if not rows:
            notes.append(f"vector: the current import has no vectors of {space.space_id} in this scope")
        return [_candidate(r) for r in rows]
