"""The Postgres client: pool, migrations, and every query the stages run.

Writes are idempotent: upserts on deterministic keys, and state transitions
written as ``UPDATE ... WHERE <expected state> RETURNING`` so that exactly one
worker wins them however often an event is delivered.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from typing import Any, Iterable, Sequence

import asyncpg

from soulprint.domain.facts import ChunkForExtraction
from soulprint.models.domain import Chunk, Conversation, ExportSummary, ProfileHints
from soulprint.models.facts import ConsolidatedFact, Fact

MIGRATIONS_PACKAGE = "soulprint.services"
MIGRATION_LOCK = 0x5017_0001  # advisory lock id: one migrator at a time across workers
MIN_PGVECTOR = (0, 8, 4)


class DatabaseError(RuntimeError):
    pass


def ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=timezone.utc)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


@dataclass
class ChunkWrite:
    """One conversation's worth of rows for the chunker's batch write."""

    job_id: str
    user_id: str
    conversation: Conversation
    chunks: list[Chunk]


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class Postgres:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # -- lifecycle -----------------------------------------------------------
    @classmethod
    async def connect(cls, url: str, *, min_size: int = 1, max_size: int = 10) -> "Postgres":
        try:
            await _ensure_database(url)
            pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, init=_init_connection)
        except (OSError, asyncpg.PostgresError) as exc:
            raise DatabaseError(f"cannot connect to Postgres: {exc}") from None
        db = cls(pool)
        await db.migrate()
        return db

    async def close(self) -> None:
        await self.pool.close()

    async def migrate(self) -> list[str]:
        """Apply services/migrations/NNNN_*.sql in order, each once, recorded in a table."""
        files = sorted(
            (f for f in resources.files(MIGRATIONS_PACKAGE).joinpath("migrations").iterdir() if f.name.endswith(".sql")),
            key=lambda f: f.name,
        )
        applied_now: list[str] = []
        async with self.pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            try:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
                for f in files:
                    if f.name in done:
                        continue
                    async with conn.transaction():
                        await conn.execute(f.read_text())
                        await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", f.name)
                    applied_now.append(f.name)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
            version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        if version is None or _version_tuple(version) < MIN_PGVECTOR:
            raise DatabaseError(
                f"pgvector {version or 'missing'} is too old: 0.8.4 or later is required (HNSW vacuum fixes)"
            )
        return applied_now

    # -- import_jobs: the status table -----------------------------------------
    async def create_job(self, job_id: str, user_id: str, source_uri: str) -> None:
        await self.pool.execute(
            "INSERT INTO import_jobs (job_id, user_id, source_uri) VALUES ($1, $2, $3)"
            " ON CONFLICT (job_id) DO NOTHING",
            job_id, user_id, source_uri,
        )

    async def get_job(self, job_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow("SELECT * FROM import_jobs WHERE job_id = $1", job_id)
        return dict(row) if row else None

    async def claim_ingest(self, job_id: str, worker: str, stale_after_s: float) -> bool:
        """queued → parsing. A stale claim (its worker died mid-parse) can be taken over."""
        row = await self.pool.fetchrow(
            """
            UPDATE import_jobs
               SET status = 'parsing', stage = 'parsing', progress = 0,
                   claimed_by = $2, claimed_at = now(), attempts = attempts + 1,
                   started_at = coalesce(started_at, now()), updated_at = now(),
                   stage_times = stage_times || jsonb_build_object('parsing',
                       jsonb_build_object('started', extract(epoch from now())))
             WHERE job_id = $1
               AND (status = 'queued'
                    OR (status = 'parsing' AND claimed_at < now() - make_interval(secs => $3)))
            RETURNING job_id
            """,
            job_id, worker, stale_after_s,
        )
        return row is not None

    async def report_parsing(self, job_id: str, *, bytes_read: int, bytes_total: int | None,
                             conversations: int, messages: int, excluded: int) -> None:
        progress = min(99.0, 100.0 * bytes_read / bytes_total) if bytes_total else 0.0
        await self.pool.execute(
            """
            UPDATE import_jobs
               SET bytes_read = $2, bytes_total = coalesce($3, bytes_total), conversations = $4,
                   messages = $5, excluded = $6, progress = $7, claimed_at = now(), updated_at = now()
             WHERE job_id = $1 AND status = 'parsing'
            """,
            job_id, bytes_read, bytes_total, conversations, messages, excluded, progress,
        )

    async def finish_ingest(self, job_id: str, summary: ExportSummary, profile: ProfileHints) -> bool:
        """parsing → chunking, with the export's totals. False if the job moved on meanwhile."""
        row = await self.pool.fetchrow(
            """
            UPDATE import_jobs
               SET status = 'chunking', stage = 'chunking', ingest_done = true,
                   format = $2, bytes_read = $3, conversations = $4, messages = $5,
                   excluded = $6, empty = $7, newest_message_at = $8, profile = $9,
                   progress = CASE WHEN $4 > 0 THEN 100.0 * conversations_chunked / $4 ELSE 0 END,
                   updated_at = now(), claimed_at = now(),
                   stage_times = stage_times
                       || jsonb_build_object('parsing', (stage_times->'parsing')
                            || jsonb_build_object('finished', extract(epoch from now())))
                       || jsonb_build_object('chunking', coalesce(stage_times->'chunking', '{}'::jsonb)
                            || jsonb_build_object('started', coalesce(
                                   (stage_times->'chunking'->>'started')::float8,
                                   extract(epoch from now()))))
             WHERE job_id = $1 AND status = 'parsing'
            RETURNING job_id
            """,
            job_id, summary.format, summary.bytes_read, summary.conversations, summary.messages,
            summary.excluded, summary.empty, ts(summary.newest_message_time),
            {
                "user_profile": profile.user_profile,
                "user_instructions": profile.user_instructions,
                "saved_memory": profile.saved_memory,
            },
        )
        return row is not None

    async def fail_job(self, job_id: str, code: str, reason: str) -> bool:
        """Any open state → failed, and remove what this job half-wrote.

        The job row lock is taken first (FOR UPDATE), so a chunker batch that
        is writing for this job (it holds the row FOR KEY SHARE) finishes
        before the cleanup, and one that starts later sees 'failed' and writes
        nothing.
        """
        reason = " ".join(reason.split())[:1000]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM import_jobs WHERE job_id = $1 FOR UPDATE", job_id)
            row = await conn.fetchrow(
                """
                UPDATE import_jobs
                   SET status = 'failed', error = $2, error_code = $3, updated_at = now(), finished_at = now()
                 WHERE job_id = $1 AND status NOT IN ('complete', 'failed')
                RETURNING job_id
                """,
                job_id, reason, code,
            )
            if row is None:
                return False
            await conn.execute("DELETE FROM conversation_chunks WHERE job_id = $1", job_id)
            await conn.execute("DELETE FROM conversations WHERE job_id = $1", job_id)
            return True

    # -- chunker ---------------------------------------------------------------
    async def write_chunks(self, writes: Sequence[ChunkWrite]) -> list[ChunkWrite]:
        """Write a batch of conversations and their chunks in one transaction.

        Returns the writes that were new for their job. A redelivered
        conversation (already chunked by the same job) is skipped whole, which
        keeps the job's counters exact; concurrent writers of the same
        conversation serialise on its row and only the first one counts.
        """
        if not writes:
            return []
        job_ids = sorted({w.job_id for w in writes})
        async with self.pool.acquire() as conn, conn.transaction():
            # FOR KEY SHARE holds off fail_job (FOR UPDATE) until this batch is
            # written, and nothing else: the facts agent's writes (FOR NO KEY
            # UPDATE) and progress updates of the same job go on meanwhile
            # instead of waiting for a batch of thousands of chunks.
            live = {
                r["job_id"]
                for r in await conn.fetch(
                    "SELECT job_id FROM import_jobs WHERE job_id = ANY($1::text[])"
                    " AND status NOT IN ('failed') ORDER BY job_id FOR KEY SHARE",
                    job_ids,
                )
            }
            candidates = [w for w in writes if w.job_id in live]
            if not candidates:
                return []
            rows = []
            for w in candidates:
                c = w.conversation
                counts = _tier_counts(w.chunks)
                rows.append((
                    w.user_id, c.id, w.job_id, c.title, c.source, ts(c.created_at), ts(c.updated_at),
                    len(c.messages), ts(c.newest_time), counts["micro"], counts["medium"], counts["macro"],
                ))
            fresh = await conn.fetch(
                """
                INSERT INTO conversations AS c (user_id, conversation_id, job_id, title, source, created_at,
                       updated_at, message_count, newest_message_at, chunks_micro, chunks_medium,
                       chunks_macro, chunked_job_id)
                SELECT u, cid, j, t, s, ca, ua, mc, nm, cm, cme, cma, j
                  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::timestamptz[], $7::timestamptz[], $8::int[], $9::timestamptz[],
                              $10::int[], $11::int[], $12::int[])
                       AS x(u, cid, j, t, s, ca, ua, mc, nm, cm, cme, cma)
                ON CONFLICT (user_id, conversation_id) DO UPDATE
                   SET job_id = EXCLUDED.job_id, title = EXCLUDED.title, source = EXCLUDED.source,
                       created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
                       message_count = EXCLUDED.message_count, newest_message_at = EXCLUDED.newest_message_at,
                       chunks_micro = EXCLUDED.chunks_micro, chunks_medium = EXCLUDED.chunks_medium,
                       chunks_macro = EXCLUDED.chunks_macro, chunked_job_id = EXCLUDED.chunked_job_id,
                       imported_at = now()
                 WHERE c.chunked_job_id IS DISTINCT FROM EXCLUDED.chunked_job_id
                RETURNING user_id, conversation_id
                """,
                *[list(col) for col in zip(*rows)],
            )
            fresh_keys = {(r["user_id"], r["conversation_id"]) for r in fresh}
            new_writes = [w for w in candidates if (w.user_id, w.conversation.id) in fresh_keys]
            if not new_writes:
                return []
            # A newer export of the same conversation may have fewer chunks: drop the tail.
            await conn.execute(
                """
                DELETE FROM conversation_chunks k
                 USING unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::int[]) AS x(u, cid, nmi, nme, nma)
                 WHERE k.user_id = x.u AND k.conversation_id = x.cid
                   AND k.chunk_index >= CASE k.tier WHEN 'micro' THEN x.nmi WHEN 'medium' THEN x.nme ELSE x.nma END
                """,
                [w.user_id for w in new_writes],
                [w.conversation.id for w in new_writes],
                *[[_tier_counts(w.chunks)[t] for w in new_writes] for t in ("micro", "medium", "macro")],
            )
            await conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS chunk_stage (LIKE conversation_chunks INCLUDING DEFAULTS)"
                " ON COMMIT DELETE ROWS"
            )
            await conn.copy_records_to_table(
                "chunk_stage",
                columns=[
                    "chunk_id", "user_id", "job_id", "conversation_id", "conversation_title", "tier",
                    "chunk_index", "content", "token_count", "message_ids", "message_at",
                ],
                records=(
                    (
                        k.id, w.user_id, w.job_id, w.conversation.id, w.conversation.title, k.tier,
                        k.index, k.content, k.token_count, k.message_ids, ts(k.newest_time),
                    )
                    for w in new_writes
                    for k in w.chunks
                ),
            )
            await conn.execute(
                """
                INSERT INTO conversation_chunks (chunk_id, user_id, job_id, conversation_id, conversation_title,
                       tier, chunk_index, content, token_count, message_ids, message_at)
                SELECT chunk_id, user_id, job_id, conversation_id, conversation_title, tier, chunk_index,
                       content, token_count, message_ids, message_at
                  FROM chunk_stage
                ON CONFLICT (chunk_id) DO UPDATE
                   SET job_id = EXCLUDED.job_id, conversation_title = EXCLUDED.conversation_title,
                       content = EXCLUDED.content, token_count = EXCLUDED.token_count,
                       message_ids = EXCLUDED.message_ids, message_at = EXCLUDED.message_at,
                       is_recent = false,
                       embedding = CASE WHEN conversation_chunks.content = EXCLUDED.content
                                        THEN conversation_chunks.embedding END
                """
            )
            # Counters move once per newly chunked conversation: batched, exact.
            per_job: dict[str, list[int]] = {}
            for w in new_writes:
                acc = per_job.setdefault(w.job_id, [0, 0, 0, 0])
                counts = _tier_counts(w.chunks)
                acc[0] += 1
                acc[1] += counts["micro"]
                acc[2] += counts["medium"]
                acc[3] += counts["macro"]
            await conn.executemany(
                """
                UPDATE import_jobs
                   SET conversations_chunked = conversations_chunked + $2,
                       chunks_micro = chunks_micro + $3, chunks_medium = chunks_medium + $4,
                       chunks_macro = chunks_macro + $5, updated_at = now(),
                       progress = CASE WHEN status = 'chunking' AND conversations > 0
                                       THEN least(99.0, 100.0 * (conversations_chunked + $2) / conversations)
                                       ELSE progress END
                 WHERE job_id = $1
                """,
                [(job, *acc) for job, acc in per_job.items()],
            )
            return new_writes

    async def complete_chunking(self, job_id: str, recent_days: int, min_full_pass_conversations: int = 50) -> bool:
        """chunking → complete once every imported conversation has its chunks.

        Counted from Postgres, so redelivery or replay of events cannot fool it;
        the UPDATE's WHERE clause lets exactly one caller win. The winner also
        starts the full pass (or marks it skipped for a small export) with its
        total: the number of medium chunks to extract facts from.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """
                UPDATE import_jobs
                   SET status = 'complete', stage = 'complete', progress = 100,
                       finished_at = now(), updated_at = now(),
                       stage_times = stage_times || jsonb_build_object('chunking',
                           coalesce(stage_times->'chunking', '{}'::jsonb)
                           || jsonb_build_object('finished', extract(epoch from now())))
                 WHERE job_id = $1 AND status = 'chunking' AND ingest_done
                   AND conversations_chunked >= conversations
                RETURNING newest_message_at
                """,
                job_id,
            )
            if row is None:
                return False
            # "Recent" is relative to the export's newest message, not to today:
            # an export downloaded a year ago still has a recent past. Chunks are
            # written with is_recent false, so only the recent few are touched
            # here (rewriting every row of a large import takes minutes).
            await conn.execute(
                """
                UPDATE conversation_chunks
                   SET is_recent = true
                 WHERE job_id = $1 AND message_at >= $2::timestamptz - make_interval(days => $3)
                """,
                job_id, row["newest_message_at"], recent_days,
            )
            await conn.execute(
                """
                UPDATE import_jobs j
                   SET full_pass_status = CASE WHEN j.conversations >= $2 THEN 'processing' ELSE 'skipped' END,
                       full_pass_stage = CASE WHEN j.conversations >= $2 THEN 'facts' END,
                       full_pass_started_at = now(), full_pass_moved_at = now(),
                       full_pass_finished_at = CASE WHEN j.conversations >= $2 THEN NULL ELSE now() END,
                       extraction_total = (SELECT count(*) FROM conversation_chunks k
                                            WHERE k.job_id = j.job_id AND k.tier = 'medium')
                 WHERE j.job_id = $1 AND j.full_pass_status = 'pending'
                """,
                job_id, min_full_pass_conversations,
            )
            return True

    # -- quick pass ------------------------------------------------------------
    async def claim_quick(self, job_id: str, stale_after_s: float) -> bool:
        """pending → running; a stale running claim (its worker died) can be taken over."""
        row = await self.pool.fetchrow(
            """
            UPDATE import_jobs
               SET quick_status = 'running', quick_claimed_at = now(), updated_at = now(),
                   stage_times = stage_times || jsonb_build_object('quick_pass',
                       jsonb_build_object('started', extract(epoch from now())))
             WHERE job_id = $1 AND status <> 'failed'
               AND (quick_status = 'pending'
                    OR (quick_status = 'running' AND quick_claimed_at < now() - make_interval(secs => $2)))
            RETURNING job_id
            """,
            job_id, stale_after_s,
        )
        return row is not None

    async def quick_ready(self, job_id: str) -> bool:
        row = await self.pool.fetchrow(
            """
            UPDATE import_jobs
               SET quick_status = 'ready', quick_ready_at = now(), updated_at = now(),
                   stage_times = stage_times || jsonb_build_object('quick_pass',
                       coalesce(stage_times->'quick_pass', '{}'::jsonb)
                       || jsonb_build_object('finished', extract(epoch from now())))
             WHERE job_id = $1 AND quick_status = 'running'
            RETURNING job_id
            """,
            job_id,
        )
        return row is not None

    async def quick_failed(self, job_id: str, reason: str) -> None:
        await self.pool.execute(
            "UPDATE import_jobs SET quick_status = 'failed', quick_error = $2, updated_at = now()"
            " WHERE job_id = $1 AND quick_status IN ('pending', 'running')",
            job_id, " ".join(reason.split())[:1000],
        )

    async def store_soulprint(self, *, user_id: str, job_id: str, version: int, sections: dict,
                              rendered: dict[str, str], soulprint_text: str, memory_md: str | None,
                              offline: bool) -> bool:
        """Swap in a soulprint version: all sections, the composite text and the version at once.

        A replay of an older version of the same job never overwrites a newer one.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """
                INSERT INTO soulprint_versions (user_id, job_id, version, sections, memory_md, soulprint_text, offline)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                ON CONFLICT (user_id, job_id, version) DO UPDATE
                   SET sections = EXCLUDED.sections, memory_md = EXCLUDED.memory_md,
                       soulprint_text = EXCLUDED.soulprint_text, offline = EXCLUDED.offline
                """,
                user_id, job_id, version, sections, memory_md, soulprint_text, offline,
            )
            row = await conn.fetchrow(
                """
                INSERT INTO soulprints AS s (user_id, job_id, version, sections, soul_md, identity_md, user_md,
                       agents_md, tools_md, memory_md, soulprint_text, offline, updated_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now())
                ON CONFLICT (user_id) DO UPDATE
                   SET job_id = EXCLUDED.job_id, version = EXCLUDED.version, sections = EXCLUDED.sections,
                       soul_md = EXCLUDED.soul_md, identity_md = EXCLUDED.identity_md,
                       user_md = EXCLUDED.user_md, agents_md = EXCLUDED.agents_md,
                       tools_md = EXCLUDED.tools_md, memory_md = EXCLUDED.memory_md,
                       soulprint_text = EXCLUDED.soulprint_text, offline = EXCLUDED.offline,
                       updated_at = now()
                 WHERE NOT (s.job_id = EXCLUDED.job_id AND s.version > EXCLUDED.version)
                RETURNING user_id
                """,
                user_id, job_id, version, sections, rendered["SOUL"], rendered["IDENTITY"], rendered["USER"],
                rendered["AGENTS"], rendered["TOOLS"], memory_md, soulprint_text, offline,
            )
            return row is not None

    async def get_soulprint(self, user_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow("SELECT * FROM soulprints WHERE user_id = $1", user_id)
        return dict(row) if row else None

    # -- full pass ---------------------------------------------------------------
    async def save_sample(self, job_id: str, samples: list[dict]) -> None:
        await self.pool.execute("UPDATE import_jobs SET sample = $2 WHERE job_id = $1", job_id, samples)

    async def extraction_plan(self, job_ids: Sequence[str], min_conversations: int) -> dict[str, str]:
        """Per job: 'extract' now, 'skip' (small, failed or finished), or 'defer' (too early to tell).

        Extraction overlaps chunking for large exports; a job whose size is not
        known yet is deferred and re-driven when chunking completes.
        """
        rows = await self.pool.fetch(
            "SELECT job_id, status, ingest_done, conversations, full_pass_status, full_pass_stage"
            " FROM import_jobs WHERE job_id = ANY($1::text[])",
            list(job_ids),
        )
        plan = {job_id: "skip" for job_id in job_ids}
        for r in rows:
            if r["status"] == "failed" or r["full_pass_status"] in ("skipped", "failed", "complete"):
                continue
            if r["full_pass_status"] == "processing":
                plan[r["job_id"]] = "extract" if r["full_pass_stage"] == "facts" else "skip"
            elif r["conversations"] >= min_conversations:
                plan[r["job_id"]] = "extract"
            elif not r["ingest_done"]:
                plan[r["job_id"]] = "defer"
        deferred = [job for job, what in plan.items() if what == "defer"]
        if deferred:
            await self.pool.execute(
                "UPDATE import_jobs SET full_pass_deferred = true WHERE job_id = ANY($1::text[])", deferred
            )
        return plan

    async def chunks_to_extract(self, job_id: str, chunk_ids: Sequence[str]) -> list[ChunkForExtraction]:
        """The medium chunks among ``chunk_ids`` that do not have their facts yet."""
        rows = await self.pool.fetch(
            """
            SELECT k.chunk_id::text AS chunk_id, k.conversation_id, k.conversation_title, k.content,
                   k.message_ids, extract(epoch from k.message_at) AS message_time, k.token_count
              FROM conversation_chunks k
             WHERE k.chunk_id = ANY($2::uuid[]) AND k.tier = 'medium'
               AND NOT EXISTS (SELECT 1 FROM fact_extractions e
                                WHERE e.job_id = $1 AND e.chunk_id = k.chunk_id AND e.status = 'done')
             ORDER BY k.conversation_id, k.chunk_index
            """,
            job_id, list(chunk_ids),
        )
        return [
            ChunkForExtraction(
                chunk_id=r["chunk_id"], conversation_id=r["conversation_id"], title=r["conversation_title"],
                content=r["content"], message_ids=list(r["message_ids"]),
                message_time=float(r["message_time"]) if r["message_time"] is not None else None,
                token_count=r["token_count"],
            )
            for r in rows
        ]

    async def write_facts(self, job_id: str, chunk_ids: Sequence[str], facts: Sequence[Fact]) -> dict[str, Any]:
        """Replace the facts of these chunks (idempotent per chunk) and count progress from the rows.

        The job row is locked first: concurrent batches of one job then count
        in turn, each seeing the rows the other committed (a count taken in a
        statement that waited for the lock would miss them). FOR NO KEY UPDATE
        is enough for that, and does not wait for a chunker batch of the same
        job that is being written (it holds FOR KEY SHARE).
        """
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM import_jobs WHERE job_id = $1 FOR NO KEY UPDATE", job_id)
            await conn.execute(
                "DELETE FROM facts WHERE job_id = $1 AND chunk_id = ANY($2::uuid[])", job_id, list(chunk_ids)
            )
            if facts:
                await conn.copy_records_to_table(
                    "facts",
                    columns=["fact_id", "user_id", "job_id", "chunk_id", "conversation_id", "message_ids",
                             "category", "text", "subject", "project", "date", "context", "message_at", "ordinal"],
                    records=[
                        (f.fact_id, f.user_id, f.job_id, f.chunk_id, f.conversation_id, f.message_ids, f.category,
                         f.text, f.subject, f.project, f.date, f.context, ts(f.message_time), f.ordinal)
                        for f in facts
                    ],
                )
            per_chunk: dict[str, int] = {c: 0 for c in chunk_ids}
            for f in facts:
                per_chunk[f.chunk_id] = per_chunk.get(f.chunk_id, 0) + 1
            await conn.execute(
                """
                INSERT INTO fact_extractions (job_id, chunk_id, status, facts)
                SELECT $1, c, 'done', n FROM unnest($2::uuid[], $3::int[]) AS x(c, n)
                ON CONFLICT (job_id, chunk_id) DO UPDATE
                   SET status = 'done', facts = EXCLUDED.facts, error = NULL, updated_at = now()
                """,
                job_id, list(per_chunk), list(per_chunk.values()),
            )
            return await _recount_extraction(conn, job_id, progressed=True) or {}

    async def refresh_extraction(self, job_id: str) -> dict[str, Any] | None:
        """Recount extraction progress from the rows (the reconciler's view of the truth).

        Under the job row lock, like write_facts: an UPDATE whose count was
        taken before it waited for a concurrent writer would store a stale,
        lower number over the writer's correct one.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM import_jobs WHERE job_id = $1 FOR NO KEY UPDATE", job_id)
            return await _recount_extraction(conn, job_id, progressed=False)

    async def extraction_failed(self, job_id: str, chunk_ids: Sequence[str], error: str) -> None:
        await self.pool.execute(
            """
            INSERT INTO fact_extractions (job_id, chunk_id, status, error)
            SELECT $1, c, 'failed', $3 FROM unnest($2::uuid[]) AS c
            ON CONFLICT (job_id, chunk_id) DO UPDATE
               SET attempts = fact_extractions.attempts + 1, error = EXCLUDED.error, updated_at = now()
             WHERE fact_extractions.status = 'failed'
            """,
            job_id, list(chunk_ids), " ".join(error.split())[:500],
        )

    async def advance_full_pass(self, job_id: str, from_stage: str, to_stage: str) -> bool:
        """Move the full pass from one stage to the next; exactly one caller wins.

        Leaving 'facts' additionally requires every extraction chunk to have its
        facts, counted from the rows, so no redelivered or replayed event can
        start consolidation early or twice.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            # Lock first so the count below sees every committed extraction.
            await conn.execute("SELECT 1 FROM import_jobs WHERE job_id = $1 FOR NO KEY UPDATE", job_id)
            row = await conn.fetchrow(
                """
            UPDATE import_jobs
               SET full_pass_stage = $3, full_pass_moved_at = now(), updated_at = now()
             WHERE job_id = $1 AND full_pass_status = 'processing' AND full_pass_stage = $2
               AND ($2 <> 'facts' OR (SELECT count(*) FROM fact_extractions e
                                       WHERE e.job_id = $1 AND e.status = 'done') >= extraction_total)
            RETURNING job_id
            """,
                job_id, from_stage, to_stage,
            )
        return row is not None

    async def load_facts(self, job_id: str) -> list[Fact]:
        rows = await self.pool.fetch(
            "SELECT fact_id::text, user_id, job_id, chunk_id::text, conversation_id, message_ids, category, text,"
            " subject, project, date, context, extract(epoch from message_at) AS message_time, ordinal"
            " FROM facts WHERE job_id = $1 ORDER BY chunk_id, ordinal",
            job_id,
        )
        return [
            Fact(fact_id=r["fact_id"], user_id=r["user_id"], job_id=r["job_id"], chunk_id=r["chunk_id"],
                 conversation_id=r["conversation_id"], message_ids=list(r["message_ids"]), category=r["category"],
                 text=r["text"], subject=r["subject"], project=r["project"], date=r["date"], context=r["context"],
                 message_time=float(r["message_time"]) if r["message_time"] is not None else None,
                 ordinal=r["ordinal"])
            for r in rows
        ]

    async def store_consolidated(self, job_id: str, user_id: str, facts: Sequence[ConsolidatedFact]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM consolidated_facts WHERE job_id = $1", job_id)
            await conn.executemany(
                "INSERT INTO consolidated_facts (job_id, user_id, key, category, position, fact)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                [(job_id, user_id, f.key, f.category, i, f.to_dict()) for i, f in enumerate(facts)],
            )
            await conn.execute(
                "UPDATE import_jobs SET consolidated_total = $2, full_pass_moved_at = now() WHERE job_id = $1",
                job_id, len(facts),
            )

    async def load_consolidated(self, job_id: str) -> list[ConsolidatedFact]:
        rows = await self.pool.fetch(
            "SELECT fact FROM consolidated_facts WHERE job_id = $1 ORDER BY position", job_id
        )
        return [ConsolidatedFact.from_dict(r["fact"]) for r in rows]

    async def store_memory(self, job_id: str, user_id: str, memory_md: str, offline: bool) -> None:
        await self.pool.execute(
            "INSERT INTO memories (job_id, user_id, memory_md, offline) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (job_id) DO UPDATE SET memory_md = EXCLUDED.memory_md, offline = EXCLUDED.offline,"
            " created_at = now()",
            job_id, user_id, memory_md, offline,
        )
        await self.pool.execute("UPDATE import_jobs SET full_pass_moved_at = now() WHERE job_id = $1", job_id)

    async def get_memory(self, job_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow("SELECT * FROM memories WHERE job_id = $1", job_id)
        return dict(row) if row else None

    async def complete_full_pass(self, job_id: str) -> bool:
        row = await self.pool.fetchrow(
            """
            UPDATE import_jobs
               SET full_pass_status = 'complete', full_pass_stage = 'done', full_pass_finished_at = now(),
                   full_pass_moved_at = now(), updated_at = now()
             WHERE job_id = $1 AND full_pass_status = 'processing' AND full_pass_stage = 'sections'
            RETURNING job_id
            """,
            job_id,
        )
        return row is not None

    async def fail_full_pass(self, job_id: str, reason: str) -> bool:
        """The full pass fails alone: the import and the v1 sections stay as they are."""
        row = await self.pool.fetchrow(
            """
            UPDATE import_jobs
               SET full_pass_status = 'failed', full_pass_error = $2, full_pass_finished_at = now(),
                   updated_at = now()
             WHERE job_id = $1 AND full_pass_status IN ('pending', 'processing')
            RETURNING job_id
            """,
            job_id, " ".join(reason.split())[:1000],
        )
        return row is not None

    # -- reconciler ----------------------------------------------------------------
    async def stalled_jobs(self, stall_s: float) -> list[dict[str, Any]]:
        """Open jobs whose row has not moved for ``stall_s`` seconds, whatever stage they are in."""
        rows = await self.pool.fetch(
            """
            SELECT job_id, user_id, source_uri, status, ingest_done, quick_status, full_pass_status,
                   full_pass_stage, full_pass_redrives, attempts, sample,
                   extract(epoch from now() - full_pass_started_at) AS full_pass_age_s
              FROM import_jobs
             WHERE (status IN ('queued', 'parsing', 'chunking') AND updated_at < now() - make_interval(secs => $1))
                OR (status = 'complete' AND quick_status IN ('pending', 'running')
                    AND updated_at < now() - make_interval(secs => $1))
                OR (full_pass_status = 'processing' AND full_pass_moved_at < now() - make_interval(secs => $1))
             ORDER BY created_at
             LIMIT 100
            """,
            stall_s,
        )
        return [dict(r) for r in rows]

    async def note_redrive(self, job_id: str, *, full_pass: bool) -> None:
        column = "full_pass_redrives" if full_pass else "attempts"
        await self.pool.execute(
            f"UPDATE import_jobs SET {column} = {column} + 1, updated_at = now(),"
            " full_pass_moved_at = CASE WHEN $2 THEN now() ELSE full_pass_moved_at END WHERE job_id = $1",
            job_id, full_pass,
        )

    async def release_ingest(self, job_id: str) -> None:
        """Let a stalled parse be claimed again (its worker or its messages are gone)."""
        await self.pool.execute(
            "UPDATE import_jobs SET status = 'queued', ingest_done = false, claimed_at = NULL"
            " WHERE job_id = $1 AND status IN ('parsing', 'chunking')",
            job_id,
        )

    async def unextracted_chunks(self, job_id: str, max_attempts: int) -> tuple[dict[str, list[tuple[str, int]]], int]:
        """Medium chunks of the job still without facts, by conversation; and how many gave up."""
        rows = await self.pool.fetch(
            """
            SELECT k.conversation_id, k.chunk_id::text AS chunk_id, k.token_count, e.attempts
              FROM conversation_chunks k
              LEFT JOIN fact_extractions e ON e.job_id = $1 AND e.chunk_id = k.chunk_id
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

    # -- reads -----------------------------------------------------------------
    async def chunk_counts(self, job_id: str) -> dict[str, int]:
        rows = await self.pool.fetch(
            "SELECT tier, count(*) AS n FROM conversation_chunks WHERE job_id = $1 GROUP BY tier", job_id
        )
        counts = {"micro": 0, "medium": 0, "macro": 0}
        counts.update({r["tier"]: r["n"] for r in rows})
        return counts


async def _recount_extraction(conn: asyncpg.Connection, job_id: str, *, progressed: bool) -> dict[str, Any] | None:
    """Store extraction progress counted from the rows. The caller holds the job row lock,
    so this statement's snapshot includes every committed extraction."""
    row = await conn.fetchrow(
        """
        UPDATE import_jobs
           SET extraction_done = (SELECT count(*) FROM fact_extractions WHERE job_id = $1 AND status = 'done'),
               facts_total = (SELECT count(*) FROM facts WHERE job_id = $1),
               full_pass_moved_at = CASE WHEN $2 THEN now() ELSE full_pass_moved_at END,
               updated_at = CASE WHEN $2 THEN now() ELSE updated_at END
         WHERE job_id = $1
        RETURNING extraction_done, extraction_total, facts_total, full_pass_status, full_pass_stage
        """,
        job_id, progressed,
    )
    return dict(row) if row else None


def _tier_counts(chunks: Iterable[Chunk]) -> dict[str, int]:
    counts = {"micro": 0, "medium": 0, "macro": 0}
    for k in chunks:
        counts[k.tier] += 1
    return counts


async def _ensure_database(url: str) -> None:
    """Create the target database if it does not exist (fresh embedded cluster)."""
    try:
        conn = await asyncpg.connect(url)
    except asyncpg.InvalidCatalogNameError:
        base, _, name = url.rpartition("/")
        name = name.split("?")[0]
        admin = await asyncpg.connect(f"{base}/postgres")
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:
            pass
        finally:
            await admin.close()
    else:
        await conn.close()
