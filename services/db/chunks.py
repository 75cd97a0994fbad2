"""Conversations and their chunks: rows of one job each.

A job writes only its own rows, keyed (job_id, conversation_id) and
(job_id, chunk_id); chunk ids are uuid5(user, conversation, tier, index), the
same in every job, so a re-import of unchanged content has the same ids. The
functions taking ``conn`` run inside a job transition (services/db/jobs.py).

A conversation too large for its event waits in ``conversation_payloads``
(keyed like the job's conversations) from ingest until the transaction that
writes its chunks, which deletes it; a failed or retired job's go with its rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import AsyncIterator, Iterable, Sequence

import asyncpg

from soulprint.domain.chunking import chunk_id
from soulprint.domain.facts import ChunkForExtraction
from soulprint.models.domain import Chunk, Conversation
from soulprint.models.facts import fact_id
from soulprint.services.db.facts import FACT_COLUMNS
from soulprint.services.db.pool import ts

TIERS = ("micro", "medium", "macro")


@dataclass
class ChunkWrite:
    """One conversation's worth of rows for the chunker's batch write."""

    job_id: str
    user_id: str
    conversation: Conversation
    chunks: list[Chunk]
    fingerprint: str | None = None  # domain/fingerprint.py; None: never carried into a later import


def tier_counts(chunks: Iterable[Chunk]) -> dict[str, int]:
    counts = dict.fromkeys(TIERS, 0)
    for k in chunks:
        counts[k.tier] += 1
    return counts


async def insert_conversations(conn: asyncpg.Connection, writes: Sequence[ChunkWrite]) -> list[ChunkWrite]:
    """Insert the conversations and their chunks; returns the writes that were new for their job.

    A redelivered conversation (already written by its job) is skipped whole;
    concurrent writers of the same conversation serialise on its key and only
    the first one writes.
    """
    if not writes:
        return []
    rows = []
    for w in writes:
        c, counts = w.conversation, tier_counts(w.chunks)
        rows.append((
            w.user_id, c.id, w.job_id, c.title, c.source, ts(c.created_at), ts(c.updated_at),
            len(c.messages), ts(c.newest_time), counts["micro"], counts["medium"], counts["macro"], w.fingerprint,
        ))
    fresh = await conn.fetch(
        """
        INSERT INTO conversations AS c (user_id, conversation_id, job_id, title, source, created_at,
               updated_at, message_count, newest_message_at, chunks_micro, chunks_medium, chunks_macro,
               fingerprint)
        SELECT u, cid, j, t, s, ca, ua, mc, nm, cm, cme, cma, fp
          FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                      $6::timestamptz[], $7::timestamptz[], $8::int[], $9::timestamptz[],
                      $10::int[], $11::int[], $12::int[], $13::text[])
               AS x(u, cid, j, t, s, ca, ua, mc, nm, cm, cme, cma, fp)
        ON CONFLICT (job_id, conversation_id) DO NOTHING
        RETURNING job_id, conversation_id
        """,
        *[list(col) for col in zip(*rows)],
    )
    fresh_keys = {(r["job_id"], r["conversation_id"]) for r in fresh}
    new_writes = [w for w in writes if (w.job_id, w.conversation.id) in fresh_keys]
    if not new_writes:
        return []
    await _copy_chunks(conn, (
        _chunk_record(w.job_id, w.user_id, w.conversation, k) for w in new_writes for k in w.chunks
    ))
    await _carry_embeddings(conn, sorted({w.user_id for w in new_writes}))
    return new_writes


async def insert_streamed(conn: asyncpg.Connection, job_id: str, user_id: str, conv: Conversation,
                          fingerprint: str | None,
                          batches: AsyncIterator[list[Chunk]]) -> tuple[dict[str, int], list[Chunk]] | None:
    """One large conversation, its chunks written as they come: (tier counts, its medium
    chunks without their content), or None if the job had it already."""
    fresh = await conn.fetchval(
        """
        INSERT INTO conversations (user_id, conversation_id, job_id, title, source, created_at,
               updated_at, message_count, newest_message_at, chunks_micro, chunks_medium, chunks_macro,
               fingerprint)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, 0, 0, $10)
        ON CONFLICT (job_id, conversation_id) DO NOTHING
        RETURNING true
        """,
        user_id, conv.id, job_id, conv.title, conv.source, ts(conv.created_at), ts(conv.updated_at),
        len(conv.messages), ts(conv.newest_time), fingerprint,
    )
    if not fresh:
        return None
    counts = dict.fromkeys(TIERS, 0)
    medium: list[Chunk] = []

    async def records():
        async for batch in batches:
            for k in batch:
                counts[k.tier] += 1
                yield _chunk_record(job_id, user_id, conv, k)
                if k.tier == "medium":
                    medium.append(replace(k, content=""))

    await _copy_chunks(conn, records())
    await _carry_embeddings(conn, [user_id])
    await conn.execute(
        "UPDATE conversations SET chunks_micro = $3, chunks_medium = $4, chunks_macro = $5"
        " WHERE job_id = $1 AND conversation_id = $2",
        job_id, conv.id, counts["micro"], counts["medium"], counts["macro"],
    )
    return counts, medium


_CHUNK_COLUMNS = ["chunk_id", "user_id", "job_id", "conversation_id", "conversation_title", "tier",
                  "chunk_index", "content", "token_count", "message_ids", "message_at"]


def _chunk_record(job_id: str, user_id: str, conv: Conversation, k: Chunk) -> tuple:
    return (k.id, user_id, job_id, conv.id, conv.title, k.tier, k.index, k.content, k.token_count,
            k.message_ids, ts(k.newest_time))


async def _copy_chunks(conn: asyncpg.Connection, records) -> None:
    """COPY chunk rows (an iterable or async iterable) into a staging table, then into
    conversation_chunks; the staging rows stay until commit (for _carry_embeddings)."""
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS chunk_stage (LIKE conversation_chunks INCLUDING DEFAULTS)"
        " ON COMMIT DELETE ROWS"
    )
    await conn.copy_records_to_table("chunk_stage", columns=_CHUNK_COLUMNS, records=records)
    columns = ", ".join(_CHUNK_COLUMNS)
    await conn.execute(
        f"INSERT INTO conversation_chunks ({columns}) SELECT {columns} FROM chunk_stage"
        " ON CONFLICT (job_id, chunk_id) DO NOTHING"
    )


async def _carry_embeddings(conn: asyncpg.Connection, user_ids: list[str]) -> None:
    """A chunk whose content is unchanged since the person's current import keeps its embeddings.

    Only persons whose current import has embeddings at all pay for the join.
    """
    embedded = await conn.fetch(
        "SELECT p.user_id, p.current_job_id FROM people p WHERE p.user_id = ANY($1::text[])"
        " AND EXISTS (SELECT 1 FROM chunk_embeddings e WHERE e.job_id = p.current_job_id)",
        user_ids,
    )
    for r in embedded:
        await conn.execute(
            """
            INSERT INTO chunk_embeddings (job_id, chunk_id, model, dimensions, embedding)
            SELECT s.job_id, s.chunk_id, e.model, e.dimensions, e.embedding
              FROM chunk_stage s
              JOIN conversation_chunks old ON old.job_id = $2 AND old.chunk_id = s.chunk_id
                                          AND old.content = s.content
              JOIN chunk_embeddings e ON e.job_id = old.job_id AND e.chunk_id = old.chunk_id
             WHERE s.user_id = $1 AND s.job_id <> $2
            ON CONFLICT DO NOTHING
            """,
            r["user_id"], r["current_job_id"],
        )


@dataclass
class Carried:
    """A conversation copied from the person's previous import: its medium chunks (for the
    chunk event) and how many of them came with their facts."""

    job_id: str
    user_id: str
    conversation_id: str
    medium: list[tuple[str, int]]  # (chunk id, token count), in order
    counts: dict[str, int]
    extracted: int


async def carry(conn: asyncpg.Connection, job_id: str, user_id: str, source_job: str,
                candidates: Sequence[ChunkWrite]) -> list[Carried]:
    """Copy every candidate whose fingerprint equals its row in ``source_job`` into ``job_id``:
    the conversation (with the new export's metadata), its chunks, their vectors in every space,
    and the facts and extraction rows of its chunks that have them. Returns those copied (a
    conversation the job has already is skipped, as insert_conversations does).

    Rows are read by key: chunk ids follow from the per-tier counts (uuid5(user, conversation,
    tier, index)) and fact ids from the per-chunk fact counts (uuid5(chunk, ordinal)), so a
    batch costs its own rows, not a scan of the previous import. The caller holds both jobs
    FOR KEY SHARE: the source cannot be retired (FOR UPDATE) in between.
    """
    if not candidates:
        return []
    cols = list(zip(*[
        (w.conversation.id, w.conversation.title, w.conversation.source, ts(w.conversation.created_at),
         ts(w.conversation.updated_at), len(w.conversation.messages), ts(w.conversation.newest_time), w.fingerprint)
        for w in candidates
    ]))
    rows = await conn.fetch(
        """
        INSERT INTO conversations (user_id, conversation_id, job_id, title, source, created_at, updated_at,
               message_count, newest_message_at, chunks_micro, chunks_medium, chunks_macro, fingerprint)
        SELECT $2, x.cid, $1, x.t, x.s, x.ca, x.ua, x.mc, x.nm,
               o.chunks_micro, o.chunks_medium, o.chunks_macro, o.fingerprint
          FROM unnest($4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::timestamptz[], $9::int[],
                      $10::timestamptz[], $11::text[]) AS x(cid, t, s, ca, ua, mc, nm, fp)
          JOIN conversations o ON o.job_id = $3 AND o.conversation_id = x.cid AND o.fingerprint = x.fp
        ON CONFLICT (job_id, conversation_id) DO NOTHING
        RETURNING conversation_id, chunks_micro, chunks_medium, chunks_macro
        """,
        job_id, user_id, source_job, *[list(c) for c in cols],
    )
    if not rows:
        return []
    every, medium = [], []
    for r in rows:
        for tier in TIERS:
            ids = [chunk_id(user_id, r["conversation_id"], tier, i) for i in range(r[f"chunks_{tier}"])]
            every.extend(ids)
            if tier == "medium":
                medium.extend(ids)
    columns = ", ".join(_CHUNK_COLUMNS)
    copied = ", ".join("$1" if c == "job_id" else c for c in _CHUNK_COLUMNS)
    await conn.execute(
        f"INSERT INTO conversation_chunks ({columns}) SELECT {copied} FROM conversation_chunks"
        " WHERE job_id = $2 AND chunk_id = ANY($3::uuid[]) ON CONFLICT (job_id, chunk_id) DO NOTHING",
        job_id, source_job, every,
    )
    await conn.execute(
        "INSERT INTO chunk_embeddings (job_id, chunk_id, model, dimensions, embedding)"
        " SELECT $1, chunk_id, model, dimensions, embedding FROM chunk_embeddings"
        " WHERE job_id = $2 AND chunk_id = ANY($3::uuid[]) ON CONFLICT DO NOTHING",
        job_id, source_job, every,
    )
    extracted = await conn.fetch(
        """
        INSERT INTO fact_extractions (job_id, chunk_id, status, facts, dropped)
        SELECT $1, chunk_id, 'done', facts, dropped FROM fact_extractions
         WHERE job_id = $2 AND chunk_id = ANY($3::uuid[]) AND status = 'done'
        ON CONFLICT (job_id, chunk_id) DO NOTHING
        RETURNING chunk_id::text AS chunk_id, facts
        """,
        job_id, source_job, medium,
    )
    fact_ids = [fact_id(r["chunk_id"], i) for r in extracted for i in range(r["facts"])]
    if fact_ids:
        fact_copied = ", ".join("$1" if c == "job_id" else c for c in FACT_COLUMNS)
        await conn.execute(
            f"INSERT INTO facts ({', '.join(FACT_COLUMNS)}) SELECT {fact_copied} FROM facts"
            " WHERE job_id = $2 AND fact_id = ANY($3::uuid[]) ON CONFLICT DO NOTHING",
            job_id, source_job, fact_ids,
        )
    refs = await conn.fetch(
        "SELECT conversation_id, chunk_id::text AS chunk_id, token_count FROM conversation_chunks"
        " WHERE job_id = $1 AND chunk_id = ANY($2::uuid[]) ORDER BY conversation_id, chunk_index",
        job_id, medium,
    )
    by_conversation: dict[str, list[tuple[str, int]]] = {}
    for r in refs:
        by_conversation.setdefault(r["conversation_id"], []).append((r["chunk_id"], r["token_count"]))
    done = {r["chunk_id"] for r in extracted}
    return [
        Carried(job_id=job_id, user_id=user_id, conversation_id=r["conversation_id"],
                medium=by_conversation.get(r["conversation_id"], []),
                counts={tier: r[f"chunks_{tier}"] for tier in TIERS},
                extracted=sum(c in done for c, _ in by_conversation.get(r["conversation_id"], [])))
        for r in rows
    ]


async def mark_recent(conn: asyncpg.Connection, job_id: str, newest, recent_days: int) -> None:
    """'Recent' is relative to the export's newest message, not to today: an export
    downloaded a year ago still has a recent past. Only the recent few rows are
    touched (rewriting every row of a large import takes minutes)."""
    await conn.execute(
        "UPDATE conversation_chunks SET is_recent = true"
        " WHERE job_id = $1 AND message_at >= $2::timestamptz - make_interval(days => $3)",
        job_id, newest, recent_days,
    )


async def medium_count(conn: asyncpg.Connection, job_id: str) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM conversation_chunks WHERE job_id = $1 AND tier = 'medium'", job_id
    )


async def delete_job_rows(conn: asyncpg.Connection, job_ids: Sequence[str]) -> None:
    """Everything ingest and the chunker wrote for these jobs (embeddings go with their chunks)."""
    await conn.execute("DELETE FROM conversation_chunks WHERE job_id = ANY($1::text[])", list(job_ids))
    await conn.execute("DELETE FROM conversations WHERE job_id = ANY($1::text[])", list(job_ids))
    await delete_payloads(conn, job_ids)


async def delete_payloads(conn: asyncpg.Connection, job_ids: Sequence[str],
                          conversation_ids: Sequence[str] | None = None) -> None:
    """The stored payloads of these jobs: all of them, or of (job_ids[i], conversation_ids[i])."""
    if conversation_ids is None:
        await conn.execute("DELETE FROM conversation_payloads WHERE job_id = ANY($1::text[])", list(job_ids))
        return
    await conn.execute(
        "DELETE FROM conversation_payloads p USING unnest($1::text[], $2::text[]) AS k(j, c)"
        " WHERE p.job_id = k.j AND p.conversation_id = k.c",
        list(job_ids), list(conversation_ids),
    )


class Chunks:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # -- conversations too large for an event ----------------------------------------
    async def store_payload(self, job_id: str, user_id: str, conversation_id: str, payload: bytes) -> bool:
        """Keep a conversation's messages for the chunker; whether this call wrote the row.

        Idempotent: a re-driven parse finds its row, or (the conversation
        already chunked for the job) writes none. FOR KEY SHARE on the job
        orders this with its cleanup (FOR UPDATE): a payload is never left
        behind for a job that failed meanwhile.
        """
        stored = await self.pool.fetchval(
            """
            INSERT INTO conversation_payloads (job_id, conversation_id, user_id, payload)
            SELECT j.job_id, $2, $3, $4 FROM import_jobs j
             WHERE j.job_id = $1 AND j.status IN ('parsing', 'chunking')
               AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.job_id = $1 AND c.conversation_id = $2)
               FOR KEY SHARE OF j
            ON CONFLICT (job_id, conversation_id) DO NOTHING
            RETURNING true
            """,
            job_id, conversation_id, user_id, payload,
        )
        return bool(stored)

    async def load_payload(self, job_id: str, conversation_id: str) -> bytes | None:
        """A stored conversation's messages; None once chunked (or its job failed)."""
        return await self.pool.fetchval(
            "SELECT payload FROM conversation_payloads WHERE job_id = $1 AND conversation_id = $2",
            job_id, conversation_id,
        )

    async def payload_count(self, job_id: str) -> int:
        return await self.pool.fetchval("SELECT count(*) FROM conversation_payloads WHERE job_id = $1", job_id)

    async def counts(self, job_id: str) -> dict[str, int]:
        rows = await self.pool.fetch(
            "SELECT tier, count(*) AS n FROM conversation_chunks WHERE job_id = $1 GROUP BY tier", job_id
        )
        return dict.fromkeys(TIERS, 0) | {r["tier"]: r["n"] for r in rows}

    async def to_extract(self, job_id: str, user_id: str,
                         conversation_ids: Sequence[str]) -> tuple[list[ChunkForExtraction], set[str]]:
        """Every medium chunk of these conversations of the job, and the ids of those with their
        facts already: requests are packed over a whole conversation (agents/facts.py). Read by
        key: the ids follow from the conversations' medium counts (uuid5(user, conversation,
        tier, index))."""
        counts = await self.pool.fetch(
            "SELECT conversation_id, chunks_medium FROM conversations"
            " WHERE job_id = $1 AND conversation_id = ANY($2::text[])",
            job_id, list(conversation_ids),
        )
        ids = [chunk_id(user_id, r["conversation_id"], "medium", i) for r in counts for i in range(r["chunks_medium"])]
        rows = await self.pool.fetch(
            """
            SELECT k.chunk_id::text AS chunk_id, k.conversation_id, k.conversation_title, k.content,
                   k.message_ids, extract(epoch from k.message_at) AS message_time, k.token_count,
                   k.chunk_index, e.status = 'done' AS done
              FROM conversation_chunks k
              LEFT JOIN fact_extractions e ON e.job_id = k.job_id AND e.chunk_id = k.chunk_id
             WHERE k.job_id = $1 AND k.chunk_id = ANY($2::uuid[])
             ORDER BY k.conversation_id, k.chunk_index
            """,
            job_id, ids,
        )
        chunks = [
            ChunkForExtraction(
                chunk_id=r["chunk_id"], conversation_id=r["conversation_id"], title=r["conversation_title"],
                content=r["content"], message_ids=list(r["message_ids"]),
                message_time=float(r["message_time"]) if r["message_time"] is not None else None,
                token_count=r["token_count"], index=r["chunk_index"],
            )
            for r in rows
        ]
        return chunks, {r["chunk_id"] for r in rows if r["done"]}

    async def small_candidates(self, job_id: str, after: str | None, limit: int, max_chunks: int) -> list[str]:
        """A page of the job's conversations with 1 to ``max_chunks`` medium chunks, in id order after
        ``after``: the ones that may be small enough to be packed with others (domain/facts.is_small)."""
        rows = await self.pool.fetch(
            "SELECT conversation_id FROM conversations WHERE job_id = $1 AND chunks_medium BETWEEN 1 AND $4"
            " AND ($2::text IS NULL OR conversation_id > $2) ORDER BY conversation_id LIMIT $3",
            job_id, after, limit, max_chunks,
        )
        return [r["conversation_id"] for r in rows]

    async def unextracted(self, job_id: str, max_attempts: int) -> tuple[dict[str, list[tuple[str, int]]], int]:
        """The job's medium chunks still without facts, by conversation; and how many gave up."""
        rows = await self.pool.fetch(
            """
            SELECT k.conversation_id, k.chunk_id::text AS chunk_id, k.token_count, e.attempts
              FROM conversation_chunks k
              LEFT JOIN fact_extractions e ON e.job_id = k.job_id AND e.chunk_id = k.chunk_id
             WHERE k.job_id = $1 AND k.tier = 'medium' AND (e.status IS NULL OR e.status = 'failed')
            """,
            job_id,
        )
        pending: dict[str, list[tuple[str, int]]] = {}
        exhausted = 0
        for r in rows:
            if r["attempts"] is not None and r["attempts"] >= max_attempts:
                exhausted += 1
                continue
            pending.setdefault(r["conversation_id"], []).append((r["chunk_id"], r["token_count"]))
        return pending, exhausted
