"""Chunk embeddings: one row per (job, chunk, space) in ``chunk_embeddings``.

``model`` holds the space id (models.embedding.EmbeddingSpace.space_id), so
vectors of two models never mix and a model change embeds beside the old
rows, which stay until the job's embedding in the new space has ended
(delete_other_spaces). Vectors travel to Postgres as pgvector text literals
(orjson writes them; asyncpg has no vector codec). The functions taking ``conn`` run inside
a job transition (services/db/jobs.py), under the job row lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import asyncpg
import orjson


@dataclass(frozen=True)
class ChunkText:
    chunk_id: str
    conversation_id: str
    text: str


async def insert(conn: asyncpg.Connection, job_id: str, space_id: str, dimensions: int,
                 chunk_ids: Sequence[str], vectors: Sequence[Sequence[float]]) -> int:
    """Store the vectors of the job's chunks that have none in this space; how many were new.

    A chunk that is gone (its job retired or failed) gets no row.
    """
    rows = await conn.fetch(
        """
        INSERT INTO chunk_embeddings (job_id, chunk_id, model, dimensions, embedding)
        SELECT k.job_id, k.chunk_id, $2, $3, x.v::vector
          FROM unnest($4::uuid[], $5::text[]) AS x(c, v)
          JOIN conversation_chunks k ON k.job_id = $1 AND k.chunk_id = x.c
        ON CONFLICT (job_id, chunk_id, model) DO NOTHING
        RETURNING 1
        """,
        job_id, space_id, dimensions, list(chunk_ids), [orjson.dumps(list(v)).decode() for v in vectors],
    )
    return len(rows)


async def delete_other_spaces(conn: asyncpg.Connection, job_id: str, space_id: str) -> int:
    """Remove the job's vectors of every space but this one (its embedding in it has ended);
    how many went. Kept until then, so a search never mixes spaces and a rolled-back model
    finds its vectors still there."""
    status = await conn.execute("DELETE FROM chunk_embeddings WHERE job_id = $1 AND model <> $2", job_id, space_id)
    return int(status.split()[-1])


async def counts(conn: asyncpg.Connection, job_id: str, tiers: Sequence[str], space_id: str) -> tuple[int, int]:
    """(chunks of these tiers, those with a vector in this space), counted from the rows."""
    row = await conn.fetchrow(
        """
        SELECT count(*) AS total, count(e.chunk_id) AS embedded
          FROM conversation_chunks k
          LEFT JOIN chunk_embeddings e ON e.job_id = k.job_id AND e.chunk_id = k.chunk_id AND e.model = $3
         WHERE k.job_id = $1 AND k.tier = ANY($2::text[])
        """,
        job_id, list(tiers), space_id,
    )
    return row["total"], row["embedded"]


class Embeddings:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def tier_counts(self, job_id: str, conversation_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Per conversation of the job: its chunk count per tier (chunk ids follow from them)."""
        rows = await self.pool.fetch(
            "SELECT conversation_id, chunks_micro, chunks_medium, chunks_macro FROM conversations"
            " WHERE job_id = $1 AND conversation_id = ANY($2::text[])",
            job_id, list(conversation_ids),
        )
        return {r["conversation_id"]: {"micro": r["chunks_micro"], "medium": r["chunks_medium"],
                                       "macro": r["chunks_macro"]} for r in rows}

    async def to_embed(self, job_id: str, chunk_ids: Sequence[str], space_id: str) -> list[ChunkText]:
        """The job's chunks among ``chunk_ids`` with no vector in this space yet (by the key)."""
        rows = await self.pool.fetch(
            """
            SELECT k.chunk_id::text AS chunk_id, k.conversation_id, k.content
              FROM conversation_chunks k
             WHERE k.job_id = $1 AND k.chunk_id = ANY($2::uuid[])
               AND NOT EXISTS (SELECT 1 FROM chunk_embeddings e
                                WHERE e.job_id = $1 AND e.chunk_id = k.chunk_id AND e.model = $3)
            """,
            job_id, list(chunk_ids), space_id,
        )
        return [ChunkText(r["chunk_id"], r["conversation_id"], r["content"]) for r in rows]

    async def unembedded_conversations(self, job_id: str, tiers: Sequence[str], space_id: str,
                                       limit: int) -> list[str]:
        """Conversations of the job with a chunk of these tiers still without a vector in this space."""
        rows = await self.pool.fetch(
            """
            SELECT DISTINCT k.conversation_id
              FROM conversation_chunks k
             WHERE k.job_id = $1 AND k.tier = ANY($2::text[])
               AND NOT EXISTS (SELECT 1 FROM chunk_embeddings e
                                WHERE e.job_id = $1 AND e.chunk_id = k.chunk_id AND e.model = $3)
             ORDER BY k.conversation_id
             LIMIT $4
            """,
            job_id, list(tiers), space_id, limit,
        )
        return [r["conversation_id"] for r in rows]

    async def rows(self, job_id: str, space_id: str) -> list[asyncpg.Record]:
        """The job's vectors of one space: chunk id, tier, dimensions (for checks and reports)."""
        return await self.pool.fetch(
            "SELECT e.chunk_id::text AS chunk_id, k.tier, e.dimensions, vector_dims(e.embedding) AS dims,"
            " e.created_at FROM chunk_embeddings e JOIN conversation_chunks k USING (job_id, chunk_id)"
            " WHERE e.job_id = $1 AND e.model = $2 ORDER BY e.chunk_id",
            job_id, space_id,
        )
