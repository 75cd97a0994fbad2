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

from soulprint.models.domain import Chunk, Conversation, ExportSummary, ProfileHints

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

        The job row lock is taken first, so a chunker batch that is writing for
        this job (it holds the row FOR SHARE) finishes before the cleanup, and
        one that starts later sees 'failed' and writes nothing.
        """
        reason = " ".join(reason.split())[:1000]
        async with self.pool.acquire() as conn, conn.transaction():
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
            live = {
                r["job_id"]
                for r in await conn.fetch(
                    "SELECT job_id FROM import_jobs WHERE job_id = ANY($1::text[])"
                    " AND status NOT IN ('failed') ORDER BY job_id FOR SHARE",
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

    async def complete_chunking(self, job_id: str, recent_days: int) -> bool:
        """chunking → complete once every imported conversation has its chunks.

        Counted from Postgres, so redelivery or replay of events cannot fool it;
        the UPDATE's WHERE clause lets exactly one caller win.
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
            # an export downloaded a year ago still has a recent past.
            await conn.execute(
                """
                UPDATE conversation_chunks
                   SET is_recent = (message_at >= $2::timestamptz - make_interval(days => $3))
                 WHERE job_id = $1
                """,
                job_id, row["newest_message_at"], recent_days,
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

    # -- reads -----------------------------------------------------------------
    async def chunk_counts(self, job_id: str) -> dict[str, int]:
        rows = await self.pool.fetch(
            "SELECT tier, count(*) AS n FROM conversation_chunks WHERE job_id = $1 GROUP BY tier", job_id
        )
        counts = {"micro": 0, "medium": 0, "macro": 0}
        counts.update({r["tier"]: r["n"] for r in rows})
        return counts


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
