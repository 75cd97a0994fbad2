"""The job state machine: every transition of an import job, each with its row lock.

A transition is ``UPDATE ... WHERE <expected state> RETURNING``, so exactly
one caller wins it however often an event is delivered. Transitions that move
a job on return what to send next (``Moved.emit``); topics/stages.py says on
which topic. Locks, always taken in this order:

- the person (a transaction advisory lock on user_id) for the transitions that
  decide which of a person's imports is current: claim, fail, complete;
- the job row: FOR UPDATE to fail or retire a job (its rows are deleted),
  FOR NO KEY UPDATE to count extraction progress, FOR KEY SHARE to write chunks
  or a soulprint for it (those wait for a cleanup, and only for a cleanup).

A person's imports never move data backwards: a newer job supersedes an older
unfinished one (failed, error_code 'superseded', rows removed); a job that
completes becomes the person's current import unless a newer one already is,
and the rows of the person's older imports are retired in that transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import AsyncIterator, Sequence

import asyncpg

from soulprint.models.domain import Chunk, Conversation, ExportSummary, ProfileHints
from soulprint.models.embedding import EmbeddingSpace
from soulprint.models.events import (
    ChunkRef,
    ConversationChunked,
    FactsConsolidated,
    FactsExtracted,
    ImportRequested,
    IngestCompleted,
    MemoryWritten,
    QuickPassRequested,
    SmallConversationsReady,
)
from soulprint.models.facts import ConsolidatedFact, Fact
from soulprint.models.jobs import SUPERSEDED, EmbeddingStatus, FullPassStage, FullPassStatus, Job, JobStatus
from soulprint.models.text import one_line
from soulprint.services.db import chunks, embeddings, facts, query_view, soulprints
from soulprint.services.db.chunks import ChunkWrite, tier_counts
from soulprint.services.db.pool import ts
from soulprint.services.metrics import METRICS

PERSON_LOCK = 0x5017  # advisory lock class: (PERSON_LOCK, hashtext(user_id))

_OLDER = "(j.created_at, j.job_id) < (me.created_at, me.job_id)"
_NEWER = "(j.created_at, j.job_id) > (me.created_at, me.job_id)"


@dataclass(frozen=True)
class Moved:
    """A transition's outcome: the job row after it (None: it did not happen) and what to send next."""

    job: Job | None
    emit: list = field(default_factory=list)


async def _lock_person(conn: asyncpg.Connection, job_id: str) -> str | None:
    user_id = await conn.fetchval("SELECT user_id FROM import_jobs WHERE job_id = $1", job_id)
    if user_id is not None:
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", PERSON_LOCK, user_id)
    return user_id


async def _others(conn: asyncpg.Connection, job_id: str, relation: str, statuses: Sequence[str]) -> list[str]:
    rows = await conn.fetch(
        f"SELECT j.job_id FROM import_jobs j JOIN import_jobs me ON me.job_id = $1 AND j.user_id = me.user_id"
        f" WHERE j.job_id <> me.job_id AND j.status = ANY($2::text[]) AND {relation}"
        f" ORDER BY j.created_at, j.job_id",
        job_id, list(statuses),
    )
    return [r["job_id"] for r in rows]


async def _fail(conn: asyncpg.Connection, job_id: str, user_id: str, code: str, reason: str) -> bool:
    """Open → failed, and remove what this job wrote. The caller holds the person lock.

    FOR UPDATE first: a chunker batch writing for this job (FOR KEY SHARE)
    finishes before the cleanup, and one that starts later sees 'failed'.
    """
    await conn.execute("SELECT 1 FROM import_jobs WHERE job_id = $1 FOR UPDATE", job_id)
    row = await conn.fetchrow(
        """
        UPDATE import_jobs
           SET status = 'failed', error = $2, error_code = $3, updated_at = now(), finished_at = now()
         WHERE job_id = $1 AND status NOT IN ('complete', 'failed')
        RETURNING job_id
        """,
        job_id, one_line(reason, 1000), code,
    )
    if row is None:
        return False
    await chunks.delete_job_rows(conn, [job_id])
    await facts.delete_job_rows(conn, [job_id])
    await soulprints.restore_current(conn, user_id, job_id)
    await query_view.restore(conn, user_id, job_id)
    return True


async def _retire(conn: asyncpg.Connection, job_ids: list[str], by_job: str) -> None:
    """The person's older imports, once a newer one is current: their rows go, their passes end."""
    if not job_ids:
        return
    await conn.execute(
        "SELECT 1 FROM import_jobs WHERE job_id = ANY($1::text[]) ORDER BY job_id FOR UPDATE", job_ids
    )
    await conn.execute(
        """
        UPDATE import_jobs
           SET full_pass_status = 'failed', full_pass_error = $2, full_pass_finished_at = now(), updated_at = now()
         WHERE job_id = ANY($1::text[]) AND full_pass_status IN ('pending', 'processing')
        """,
        job_ids, f"superseded by the newer import {by_job}",
    )
    await conn.execute(
        "UPDATE import_jobs SET embedding_status = 'failed', embedding_error = $2"
        " WHERE job_id = ANY($1::text[]) AND embedding_status IN ('pending', 'processing')",
        job_ids, f"superseded by the newer import {by_job}",
    )
    await chunks.delete_job_rows(conn, job_ids)
    await facts.delete_job_rows(conn, job_ids)


async def _recount(conn: asyncpg.Connection, job_id: str, *, progressed: bool) -> Job | None:
    """Store extraction progress counted from the rows. The caller holds the job row lock,
    so this statement's snapshot includes every committed extraction."""
    row = await conn.fetchrow(
        """
        UPDATE import_jobs
           SET extraction_done = (SELECT count(*) FROM fact_extractions WHERE job_id = $1 AND status = 'done'),
               facts_dropped = (SELECT coalesce(sum(dropped), 0) FROM fact_extractions
                                 WHERE job_id = $1 AND status = 'done'),
               facts_total = (SELECT count(*) FROM facts WHERE job_id = $1),
               full_pass_moved_at = CASE WHEN $2 THEN now() ELSE full_pass_moved_at END,
               updated_at = CASE WHEN $2 THEN now() ELSE updated_at END
         WHERE job_id = $1
        RETURNING *
        """,
        job_id, progressed,
    )
    return Job.from_row(row) if row else None


def _after_extraction(job: Job | None) -> list:
    """Every extraction chunk has its facts: consolidation may start (its transition picks one caller)."""
    if job is None or not job.extraction_finished:
        return []
    return [FactsExtracted(job_id=job.job_id, user_id=job.user_id, facts=job.facts_total)]


async def _share_live(conn: asyncpg.Connection, job_ids: set[str]) -> set[str]:
    """The jobs among ``job_ids`` that have not failed, held FOR KEY SHARE (see write_chunks)."""
    rows = await conn.fetch(
        "SELECT job_id FROM import_jobs WHERE job_id = ANY($1::text[]) AND status <> 'failed'"
        " ORDER BY job_id FOR KEY SHARE",
        sorted(job_ids),
    )
    return {r["job_id"] for r in rows}


async def _hold_row(conn: asyncpg.Connection, job_id: str) -> bool:
    """Lock the job row FOR NO KEY UPDATE before writing the job's rows; False if it is gone. An
    erasure locks it FOR UPDATE first, so a write either ends before it or finds no row after it."""
    return bool(await conn.fetchval("SELECT true FROM import_jobs WHERE job_id = $1 FOR NO KEY UPDATE", job_id))


async def _lock_while_open(conn: asyncpg.Connection, job_id: str, track: str) -> bool:
    """Lock the job row FOR NO KEY UPDATE; True while the import has not failed and
    ``track`` (full_pass_status or embedding_status) is still pending or processing."""
    assert track in ("full_pass_status", "embedding_status")
    return bool(await conn.fetchval(
        f"SELECT status <> 'failed' AND {track} IN ('pending', 'processing')"
        " FROM import_jobs WHERE job_id = $1 FOR NO KEY UPDATE",
        job_id,
    ))


async def _count_chunked(conn: asyncpg.Connection, per_job: dict[str, list[int]]) -> None:
    """Move the jobs' counters by [conversations, micro, medium, macro] newly chunked."""
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


async def _store_embedding_count(conn: asyncpg.Connection, job_id: str, tiers: Sequence[str],
                                 space_id: str) -> Job:
    """Count the job's embedding in this space from the rows and store it: skipped with nothing
    to embed, complete once every chunk has its vector. The caller holds the job row lock, so
    every committed batch is in the count."""
    total, done = (await embeddings.counts(conn, job_id, tiers, space_id)) if tiers else (0, 0)
    row = await conn.fetchrow(
        """
        UPDATE import_jobs
           SET embedding_tiers = $2, embedding_model = $3, embedding_total = $4, embedded = $5,
               embedding_moved_at = now(), updated_at = now(),
               embedding_status = CASE WHEN $4 = 0 THEN 'skipped' WHEN $5 >= $4 THEN 'complete'
                                       ELSE embedding_status END
         WHERE job_id = $1
        RETURNING *
        """,
        job_id, list(tiers), space_id, total, done,
    )
    return await _end_other_spaces(conn, Job.from_row(row))


async def _end_other_spaces(conn: asyncpg.Connection, job: Job) -> Job:
    """Once the job's embedding has ended in its space, its vectors of other spaces go (kept until
    then: a re-embedding replaces them only when complete, and search reads one space only)."""
    if job.embedding_status in (EmbeddingStatus.COMPLETE, EmbeddingStatus.SKIPPED) and job.embedding_model:
        await embeddings.delete_other_spaces(conn, job.job_id, job.embedding_model)
        await conn.execute("UPDATE import_jobs SET embedding_replaces = NULL"
                           " WHERE job_id = $1 AND embedding_replaces IS NOT NULL", job.job_id)
    return job


class Jobs:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # -- reads ---------------------------------------------------------------------
    async def get(self, job_id: str) -> Job | None:
        row = await self.pool.fetchrow("SELECT * FROM import_jobs WHERE job_id = $1", job_id)
        return Job.from_row(row) if row else None

    async def current_job_id(self, user_id: str) -> str | None:
        """The person's last complete import."""
        return await self.pool.fetchval("SELECT current_job_id FROM people WHERE user_id = $1", user_id)

    async def stalled(self, stall_s: float) -> list[tuple[Job, float | None]]:
        """Open work whose row has not moved for ``stall_s`` seconds, with the full pass's age. A job
        with dead letters not yet replayed is blocked, not stalled: its import and full pass wait for
        `soulprint dlq replay` (a re-drive would only dead-letter the same message again)."""
        rows = await self.pool.fetch(
            """
            SELECT *, extract(epoch from now() - full_pass_started_at) AS full_pass_age_s
              FROM import_jobs
             WHERE (status IN ('queued', 'parsing', 'chunking') AND dead_letters = 0
                    AND updated_at < now() - make_interval(secs => $1))
                OR (status = 'complete' AND quick_status IN ('pending', 'running')
                    AND updated_at < now() - make_interval(secs => $1))
                OR (full_pass_status = 'processing' AND dead_letters = 0
                    AND full_pass_moved_at < now() - make_interval(secs => $1))
                OR (status = 'complete' AND embedding_status IN ('pending', 'processing')
                    AND coalesce(embedding_moved_at, finished_at) < now() - make_interval(secs => $1))
             ORDER BY created_at
             LIMIT 100
            """,
            stall_s,
        )
        return [(Job.from_row(r), r["full_pass_age_s"]) for r in rows]

    # -- the import: queued → parsing → chunking → complete | failed ---------------
    async def create(self, job_id: str, user_id: str, source_uri: str) -> None:
        await self.pool.execute(
            "INSERT INTO import_jobs (job_id, user_id, source_uri) VALUES ($1, $2, $3) ON CONFLICT (job_id) DO NOTHING",
            job_id, user_id, source_uri,
        )

    async def claim_ingest(self, job_id: str, worker: str, stale_after_s: float) -> bool:
        """queued → parsing (a stale claim, its worker dead mid-parse, can be taken over).

        A job older than another live import of the same person is superseded
        instead; a job that is claimed supersedes the person's older unfinished ones.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            user_id = await _lock_person(conn, job_id)
            if user_id is None:
                return False
            newer = await _others(conn, job_id, _NEWER, ["queued", "parsing", "chunking", "complete"])
            if newer:
                await _fail(conn, job_id, user_id, SUPERSEDED, f"superseded by the newer import {newer[-1]}")
                return False
            row = await conn.fetchrow(
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
            if row is None:
                return False
            for older in await _others(conn, job_id, _OLDER, ["queued", "parsing", "chunking"]):
                await _fail(conn, older, user_id, SUPERSEDED, f"superseded by the newer import {job_id}")
            return True

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

    async def finish_ingest(self, job_id: str, summary: ExportSummary, profile: ProfileHints,
                            samples: list[dict]) -> Moved:
        """parsing → chunking, with the export's totals and the sample; emits the quick pass's
        request and the end-of-export marker."""
        hints = {"user_profile": profile.user_profile, "user_instructions": profile.user_instructions,
                 "saved_memory": list(profile.saved_memory)}
        row = await self.pool.fetchrow(
            """
            UPDATE import_jobs
               SET status = 'chunking', stage = 'chunking', ingest_done = true,
                   format = $2, bytes_read = $3, conversations = $4, messages = $5,
                   excluded = $6, empty = $7, newest_message_at = $8, profile = $9, sample = $10,
                   nul_stripped = $11, surrogates_replaced = $12,
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
            RETURNING *
            """,
            job_id, summary.format, summary.bytes_read, summary.conversations, summary.messages,
            summary.excluded, summary.empty, ts(summary.newest_message_time), hints, samples,
            summary.nul_stripped, summary.surrogates_replaced,
        )
        if row is None:
            return Moved(None)  # failed or taken over meanwhile: the newer owner reports
        job = Job.from_row(row)
        return Moved(job, [
            QuickPassRequested(job_id=job_id, user_id=job.user_id, conversations=summary.conversations,
                               samples=samples, profile=hints),
            IngestCompleted(job_id=job_id, user_id=job.user_id, conversations=summary.conversations,
                            messages=summary.messages, excluded=summary.excluded, empty=summary.empty,
                            newest_message_time=summary.newest_message_time),
        ])

    async def fail(self, job_id: str, code: str, reason: str) -> bool:
        """Any open state → failed; the job's own rows go, the person's current import stays as it is."""
        async with self.pool.acquire() as conn, conn.transaction():
            user_id = await _lock_person(conn, job_id)
            return user_id is not None and await _fail(conn, job_id, user_id, code, reason)

    async def release_ingest(self, job_id: str) -> None:
        """Let a stalled parse be claimed again (its worker or its messages are gone)."""
        await self.pool.execute(
            "UPDATE import_jobs SET status = 'queued', ingest_done = false, claimed_at = NULL"
            " WHERE job_id = $1 AND status IN ('parsing', 'chunking')",
            job_id,
        )

    async def redrive_import(self, job: Job, max_redrives: int) -> Moved:
        """A stalled import: publish its request again, or fail it past ``max_redrives`` re-drives."""
        if job.redrives >= max_redrives:
            await self.fail(job.job_id, "stalled", f"import stalled in {job.status} after {job.redrives} re-drives")
            return Moved(None)
        await self.release_ingest(job.job_id)
        await self.note_redrive(job.job_id, full_pass=False)
        return Moved(job, [ImportRequested(job_id=job.job_id, user_id=job.user_id, source_uri=job.source_uri,
                                           requested_at=job.created_at.timestamp())])

    async def note_redrive(self, job_id: str, *, full_pass: bool) -> None:
        column = "full_pass_redrives" if full_pass else "redrives"
        await self.pool.execute(
            f"UPDATE import_jobs SET {column} = {column} + 1, updated_at = now(),"
            " full_pass_moved_at = CASE WHEN $2 THEN now() ELSE full_pass_moved_at END WHERE job_id = $1",
            job_id, full_pass,
        )

    # -- chunking ----------------------------------------------------------------------
    async def write_chunks(self, writes: Sequence[ChunkWrite]) -> list[ChunkWrite]:
        """Write a batch of conversations and their chunks in one transaction; returns the new ones.

        FOR KEY SHARE on the jobs holds off their cleanup (FOR UPDATE) until the
        batch is written, and nothing else: fact writes (FOR NO KEY UPDATE) and
        progress updates go on meanwhile. Counters move once per newly chunked
        conversation: batched, exact.
        """
        if not writes:
            return []
        async with self.pool.acquire() as conn, conn.transaction():
            live = await _share_live(conn, {w.job_id for w in writes})
            new_writes = await chunks.insert_conversations(conn, [w for w in writes if w.job_id in live])
            per_job: dict[str, list[int]] = {}
            for w in new_writes:
                acc = per_job.setdefault(w.job_id, [0, 0, 0, 0])
                counts = tier_counts(w.chunks)
                for i, n in enumerate((1, counts["micro"], counts["medium"], counts["macro"])):
                    acc[i] += n
            await _count_chunked(conn, per_job)
            return new_writes

    async def carry_conversations(self, candidates: Sequence[ChunkWrite]) -> list[chunks.Carried]:
        """Copy the conversations unchanged since their person's current import (same fingerprint)
        from it instead of chunking them (chunks.carry); returns those copied, counted as chunked
        and as carried. Locks as write_chunks, plus the source imports FOR KEY SHARE, all in job
        id order: a source cannot be retired while its rows are copied."""
        by_job: dict[str, list[ChunkWrite]] = {}
        for w in candidates:
            if w.fingerprint is not None:
                by_job.setdefault(w.job_id, []).append(w)
        if not by_job:
            return []
        async with self.pool.acquire() as conn, conn.transaction():
            sources = {r["job_id"]: r["source"] for r in await conn.fetch(
                "SELECT j.job_id, p.current_job_id AS source FROM import_jobs j"
                " JOIN people p ON p.user_id = j.user_id AND p.current_job_id <> j.job_id"
                " WHERE j.job_id = ANY($1::text[])",
                sorted(by_job),
            )}
            live = await _share_live(conn, set(sources) | set(sources.values()))
            carried: list[chunks.Carried] = []
            for job_id, source in sources.items():
                if job_id in live and source in live:
                    carried.extend(await chunks.carry(conn, job_id, by_job[job_id][0].user_id, source, by_job[job_id]))
            per_job: dict[str, list[int]] = {}
            for c in carried:
                acc = per_job.setdefault(c.job_id, [0, 0, 0, 0, 0])
                for i, n in enumerate((1, c.counts["micro"], c.counts["medium"], c.counts["macro"], c.extracted)):
                    acc[i] += n
            await _count_chunked(conn, {job: acc[:4] for job, acc in per_job.items()})
            await conn.executemany(
                "UPDATE import_jobs SET conversations_carried = conversations_carried + $2,"
                " extraction_carried = extraction_carried + $3 WHERE job_id = $1",
                [(job, acc[0], acc[4]) for job, acc in per_job.items()],
            )
            await chunks.delete_payloads(conn, [c.job_id for c in carried], [c.conversation_id for c in carried])
            return carried

    async def write_stored_chunks(self, job_id: str, user_id: str, conv: Conversation, fingerprint: str | None,
                                  batches: AsyncIterator[list[Chunk]]) -> Moved:
        """One conversation that came by reference: its chunks written as they are cut, its
        payload deleted, in one transaction (locks as write_chunks). Emits its chunk event
        (the medium chunks) unless the job had it already or failed."""
        async with self.pool.acquire() as conn, conn.transaction():
            written = None
            if await _share_live(conn, {job_id}):
                written = await chunks.insert_streamed(conn, job_id, user_id, conv, fingerprint, batches)
            await chunks.delete_payloads(conn, [job_id], [conv.id])
            if written is None:
                return Moved(None)
            counts, medium = written
            await _count_chunked(conn, {job_id: [1, counts["micro"], counts["medium"], counts["macro"]]})
        return Moved(None, [ConversationChunked(
            job_id=job_id, user_id=user_id, conversation_id=conv.id,
            chunks=[ChunkRef(chunk_id=k.id, tier=k.tier, token_count=k.token_count) for k in medium],
        )])

    async def complete_chunking(self, job_id: str, *, recent_days: int, min_full_pass_conversations: int,
                                extraction_max_attempts: int) -> Moved:
        """chunking → complete once every conversation has its chunks (counted: one caller wins).

        The winner becomes the person's current import (unless a newer one
        already is: then it is superseded), retires the person's older imports,
        and starts the full pass (or marks it skipped for a small export).
        """
        async with self.pool.acquire() as conn, conn.transaction():
            user_id = await _lock_person(conn, job_id)
            if user_id is None:
                return Moved(None)
            ready = await conn.fetchval(
                "SELECT status = 'chunking' AND ingest_done AND conversations_chunked >= conversations"
                " FROM import_jobs WHERE job_id = $1",
                job_id,
            )
            if not ready:
                return Moved(None)
            newer = await _others(conn, job_id, _NEWER, ["complete"])
            if newer:
                await _fail(conn, job_id, user_id, SUPERSEDED, f"superseded by the newer import {newer[-1]}")
                return Moved(None)
            newest = await conn.fetchval(
                """
                UPDATE import_jobs
                   SET status = 'complete', stage = 'complete', progress = 100,
                       finished_at = now(), updated_at = now(),
                       stage_times = stage_times || jsonb_build_object('chunking',
                           coalesce(stage_times->'chunking', '{}'::jsonb)
                           || jsonb_build_object('finished', extract(epoch from now())))
                 WHERE job_id = $1
                RETURNING newest_message_at
                """,
                job_id,
            )
            await chunks.mark_recent(conn, job_id, newest, recent_days)
            await chunks.delete_payloads(conn, [job_id])  # every conversation is chunked: none is needed
            row = await conn.fetchrow(
                """
                UPDATE import_jobs
                   SET full_pass_status = CASE WHEN conversations >= $2 THEN 'processing' ELSE 'skipped' END,
                       full_pass_stage = CASE WHEN conversations >= $2 THEN 'facts' END,
                       full_pass_started_at = now(), full_pass_moved_at = now(),
                       full_pass_finished_at = CASE WHEN conversations >= $2 THEN NULL ELSE now() END,
                       extraction_total = $3
                 WHERE job_id = $1 AND full_pass_status = 'pending'
                RETURNING *
                """,
                job_id, min_full_pass_conversations, await chunks.medium_count(conn, job_id),
            )
            await _retire(conn, await _others(conn, job_id, _OLDER, ["complete"]), job_id)
            await conn.execute(
                "INSERT INTO people (user_id, current_job_id) VALUES ($1, $2)"
                " ON CONFLICT (user_id) DO UPDATE SET current_job_id = EXCLUDED.current_job_id, updated_at = now()",
                user_id, job_id,
            )
            job = Job.from_row(row) if row else await self._get(conn, job_id)
        if row and job.full_pass_status == FullPassStatus.SKIPPED:  # a small export: v1 is its soulprint
            METRICS.time_to_complete.observe((job.full_pass_finished_at - job.created_at).total_seconds())
        if job.full_pass_status != FullPassStatus.PROCESSING:
            return Moved(job)
        if job.full_pass_deferred:  # the facts agent saw chunks before the size was known
            return await self.redrive_extraction(job_id, extraction_max_attempts)
        counted = await self.recount_extraction(job_id)
        # Every conversation is chunked: the small ones can be packed together now.
        return Moved(counted.job, counted.emit + [SmallConversationsReady(job_id=job_id, user_id=user_id)])

    # -- quick pass: pending → running → ready | failed -------------------------------
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
            RETURNING extract(epoch from now() - created_at)::float8 AS waited
            """,
            job_id,
        )
        if row is not None:  # the one caller that moved it: observed once (created_at: the request)
            METRICS.time_to_quick_ready.observe(row["waited"])
        return row is not None

    async def quick_failed(self, job_id: str, reason: str) -> None:
        await self.pool.execute(
            "UPDATE import_jobs SET quick_status = 'failed', quick_error = $2, updated_at = now()"
            " WHERE job_id = $1 AND quick_status IN ('pending', 'running')",
            job_id, one_line(reason, 1000),
        )

    async def redrive_quick(self, job: Job) -> Moved:
        await self.note_redrive(job.job_id, full_pass=False)
        return Moved(job, [QuickPassRequested(job_id=job.job_id, user_id=job.user_id, samples=job.sample or [],
                                              profile=job.profile or {}, conversations=job.conversations)])

    # -- full pass: facts → consolidating → memory → sections → done --------------------
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
        plan = dict.fromkeys(job_ids, "skip")
        for r in rows:
            if r["status"] == JobStatus.FAILED or r["full_pass_status"] in ("skipped", "failed", "complete"):
                continue
            if r["full_pass_status"] == FullPassStatus.PROCESSING:
                plan[r["job_id"]] = "extract" if r["full_pass_stage"] == FullPassStage.FACTS else "skip"
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

    async def record_facts(self, job_id: str, chunk_ids: Sequence[str], found: Sequence[Fact],
                           dropped: dict[str, int] | None = None) -> Moved:
        """Replace the facts of these chunks and count progress from the rows.

        The job row is locked first (FOR NO KEY UPDATE): concurrent batches of
        one job then count in turn, each seeing the rows the other committed,
        without waiting for a chunker batch of the job (FOR KEY SHARE). A job
        that failed or was retired meanwhile gets nothing written.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            if not await _lock_while_open(conn, job_id, "full_pass_status"):
                return Moved(None)
            await facts.write(conn, job_id, chunk_ids, found, dropped or {})
            job = await _recount(conn, job_id, progressed=True)
        return Moved(job, _after_extraction(job))

    async def recount_extraction(self, job_id: str) -> Moved:
        """Recount extraction progress from the rows (the reconciler's view of the truth), under
        the job row lock: a count taken before waiting for a writer would store a stale number."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM import_jobs WHERE job_id = $1 FOR NO KEY UPDATE", job_id)
            job = await _recount(conn, job_id, progressed=False)
        return Moved(job, _after_extraction(job))

    async def redrive_extraction(self, job_id: str, max_attempts: int) -> Moved:
        """Chunk events again for every medium chunk of the job still without facts; with none
        left, either consolidation's trigger or (chunks gave up) the full pass fails."""
        pending, exhausted = await chunks.Chunks(self.pool).unextracted(job_id, max_attempts)
        recounted = await self.recount_extraction(job_id)
        job = recounted.job
        if job is None:
            return recounted
        if pending:
            # Each conversation again (the facts agent sends those it packs alone), and the job's
            # small conversations, which one event packs together.
            return Moved(job, [
                ConversationChunked(job_id=job_id, user_id=job.user_id, conversation_id=conversation_id,
                                    chunks=[ChunkRef(chunk_id=c, tier="medium", token_count=n) for c, n in refs])
                for conversation_id, refs in pending.items()
            ] + [SmallConversationsReady(job_id=job_id, user_id=job.user_id)])
        if exhausted:
            await self.fail_full_pass(job_id, f"{exhausted} chunks failed fact extraction {max_attempts} times")
            return Moved(None)
        return recounted

    async def advance_full_pass(self, job_id: str, from_stage: FullPassStage, to_stage: FullPassStage) -> bool:
        """Move the full pass from one stage to the next (or back, for a re-drive); one caller wins.

        Leaving 'facts' also requires every extraction chunk to have its facts,
        counted from the rows, so no replayed event starts consolidation early
        or twice; and if every fact the model answered was dropped (named no
        chunk it was sent), the full pass fails with that reason instead.
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
                RETURNING facts_total, facts_dropped
                """,
                job_id, from_stage, to_stage,
            )
            if row is None:
                return False
            if from_stage == FullPassStage.FACTS and row["facts_total"] == 0 and row["facts_dropped"] > 0:
                await conn.execute(
                    "UPDATE import_jobs SET full_pass_status = 'failed', full_pass_finished_at = now(),"
                    " full_pass_error = $2 WHERE job_id = $1",
                    job_id, f"every fact extracted was dropped: {row['facts_dropped']} facts named no chunk "
                            "of their request, 0 kept",
                )
                return False
            return True

    async def store_consolidated(self, job_id: str, user_id: str, found: Sequence[ConsolidatedFact]) -> Moved:
        """The job's consolidated facts replaced; nothing for a job that is gone (erased while this ran)."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await _hold_row(conn, job_id):
                return Moved(None)
            await facts.store_consolidated(conn, job_id, user_id, found)
            await conn.execute(
                "UPDATE import_jobs SET consolidated_total = $2, full_pass_moved_at = now() WHERE job_id = $1",
                job_id, len(found),
            )
        return Moved(None, [FactsConsolidated(job_id=job_id, user_id=user_id, consolidated=len(found))])

    async def store_memory(self, job_id: str, user_id: str, memory_md: str, offline: bool) -> Moved:
        """The job's MEMORY stored; nothing for a job that is gone (erased while this ran)."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await _hold_row(conn, job_id):
                return Moved(None)
            await soulprints.store_memory(conn, job_id, user_id, memory_md, offline)
            await conn.execute("UPDATE import_jobs SET full_pass_moved_at = now() WHERE job_id = $1", job_id)
        return Moved(None, [MemoryWritten(job_id=job_id, user_id=user_id, offline=offline, memory_md=memory_md)])

    async def complete_full_pass(self, job_id: str) -> bool:
        row = await self.pool.fetchrow(
            """
            UPDATE import_jobs
               SET full_pass_status = 'complete', full_pass_stage = 'done', full_pass_finished_at = now(),
                   full_pass_moved_at = now(), updated_at = now()
             WHERE job_id = $1 AND full_pass_status = 'processing' AND full_pass_stage = 'sections'
            RETURNING extract(epoch from now() - created_at)::float8 AS waited
            """,
            job_id,
        )
        if row is not None:
            METRICS.time_to_complete.observe(row["waited"])
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
            job_id, one_line(reason, 1000),
        )
        return row is not None

    async def keepalive_full_pass(self, job_ids: Sequence[str]) -> None:
        """Work for these jobs' full passes is alive (a batch being polled): that is progress."""
        ids = sorted({j for j in job_ids if j})
        if ids:
            await self.pool.execute(
                "UPDATE import_jobs SET full_pass_moved_at = now()"
                " WHERE job_id = ANY($1::text[]) AND full_pass_status = 'processing'",
                ids,
            )

    # -- embedding: pending → processing → complete | failed | skipped -------------------
    # A model change restarts a current import's track in the new space (restart_embedding).
    async def record_embeddings(self, job_id: str, space: EmbeddingSpace, chunk_ids: Sequence[str],
                                vectors: Sequence[Sequence[float]]) -> Job | None:
        """Store vectors (idempotent) and count the new rows, under the job row lock; the job
        completes its embedding once its total is known and reached (its vectors of other spaces
        then go). A batch that adds rows resets the re-drive count: re-drives are bounded in a row
        without progress, so an embedding larger than one re-drive goes on. None: the job failed,
        was retired, its embedding ended or moved to another space meanwhile (nothing is written)."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await _lock_while_open(conn, job_id, "embedding_status"):
                return None
            if not await conn.fetchval("SELECT coalesce(embedding_model = $2, true) FROM import_jobs"
                                       " WHERE job_id = $1", job_id, space.space_id):
                return None  # a worker still configured with the space this job left
            added = await embeddings.insert(conn, job_id, space.space_id, space.dimensions, chunk_ids, vectors)
            row = await conn.fetchrow(
                """
                UPDATE import_jobs
                   SET embedded = embedded + $2, embedding_model = coalesce(embedding_model, $3),
                       embedding_redrives = CASE WHEN $2 > 0 THEN 0 ELSE embedding_redrives END,
                       embedding_moved_at = now(), updated_at = now(),
                       embedding_status = CASE WHEN embedding_total IS NOT NULL AND embedded + $2 >= embedding_total
                                               THEN 'complete' ELSE 'processing' END
                 WHERE job_id = $1
                RETURNING *
                """,
                job_id, added, space.space_id,
            )
            return await _end_other_spaces(conn, Job.from_row(row))

    async def start_embedding(self, job_id: str, tiers: Sequence[str], space: EmbeddingSpace) -> Job | None:
        """Once chunking is complete: fix the tiers, space and total, and count what is embedded
        already (from the rows: carried-over vectors included). Skipped with nothing to embed."""
        return await self._count_embedding(job_id, tiers, space, "embedding_total IS NULL")

    async def recount_embedding(self, job: Job) -> Job | None:
        """Recount a started embedding from the rows (the reconciler's view of the truth)."""
        space_id, tiers = job.embedding_model, job.embedding_tiers
        if space_id is None or tiers is None:
            return None
        return await self._count_embedding(job.job_id, tiers, space_id, "embedding_total IS NOT NULL")

    async def _count_embedding(self, job_id: str, tiers: Sequence[str], space: EmbeddingSpace | str,
                               started: str) -> Job | None:
        space_id = space if isinstance(space, str) else space.space_id
        async with self.pool.acquire() as conn, conn.transaction():
            # Lock first: the count below then sees every committed batch, and a
            # batch waiting for the lock adds its rows to the stored count after.
            open_ = await conn.fetchval(
                f"SELECT status = 'complete' AND embedding_status IN ('pending', 'processing') AND {started}"
                " FROM import_jobs WHERE job_id = $1 FOR NO KEY UPDATE",
                job_id,
            )
            if not open_:
                return None
            return await _store_embedding_count(conn, job_id, tiers, space_id)

    async def to_reembed(self, space_id: str, concurrency: int) -> list[str]:
        """People's current imports embedded in another space than ``space_id`` (never an older,
        retired import), newest first, as many as leave at most ``concurrency`` embeddings open in
        this space: the embed lane takes a few people at a time, and an embedding queued behind
        everyone's would look stalled. A job whose embedding has not started yet is left to its start."""
        rows = await self.pool.fetch(
            """
            SELECT j.job_id
              FROM people p JOIN import_jobs j ON j.job_id = p.current_job_id
             WHERE j.status = 'complete' AND j.embedding_model IS DISTINCT FROM $1
               AND (j.embedding_total IS NOT NULL OR j.embedding_status <> 'pending')
             ORDER BY j.created_at DESC, j.job_id
             LIMIT greatest(0, $2 - (SELECT count(*) FROM import_jobs o
                                      WHERE o.status = 'complete' AND o.embedding_model = $1
                                        AND o.embedding_status IN ('pending', 'processing')))
            """,
            space_id, concurrency,
        )
        return [r["job_id"] for r in rows]

    async def restart_embedding(self, job_id: str, tiers: Sequence[str], space: EmbeddingSpace) -> Job | None:
        """A model change: the person's current import, embedded in another space, starts its
        embedding again in this one (pending, counts from the rows: vectors already in this space
        count, so a model rolled back completes at once). The old space's vectors stay until this
        one ends; the import, its quick and full passes and the soulprint are not touched. Under
        the person lock, so a newer import cannot retire the job in between. None: not the
        person's current import, already in this space, or its embedding not started yet."""
        async with self.pool.acquire() as conn, conn.transaction():
            if await _lock_person(conn, job_id) is None:
                return None
            restarted = await conn.fetchval(
                """
                UPDATE import_jobs j
                   SET embedding_replaces = CASE WHEN j.embedding_status = 'complete' OR j.embedding_replaces IS NULL
                                                 THEN j.embedding_model ELSE j.embedding_replaces END,
                       embedding_status = 'pending', embedding_error = NULL, embedding_redrives = 0
                  FROM people p
                 WHERE j.job_id = $1 AND p.user_id = j.user_id AND p.current_job_id = j.job_id
                   AND j.status = 'complete' AND j.embedding_model IS DISTINCT FROM $2
                   AND (j.embedding_total IS NOT NULL OR j.embedding_status <> 'pending')
                RETURNING j.job_id
                """,
                job_id, space.space_id,
            )
            if restarted is None:
                return None
            return await _store_embedding_count(conn, job_id, tiers, space.space_id)

    async def fail_embedding(self, job_id: str, reason: str) -> bool:
        """The embedding fails alone: the import, its chunks and the soulprint stay."""
        row = await self.pool.fetchrow(
            """
            UPDATE import_jobs
               SET embedding_status = 'failed', embedding_error = $2, embedding_moved_at = now(), updated_at = now()
             WHERE job_id = $1 AND embedding_status IN ('pending', 'processing')
            RETURNING job_id
            """,
            job_id, one_line(reason, 1000),
        )
        return row is not None

    async def note_embedding_redrive(self, job_id: str) -> None:
        await self.pool.execute(
            "UPDATE import_jobs SET embedding_redrives = embedding_redrives + 1, embedding_moved_at = now()"
            " WHERE job_id = $1",
            job_id,
        )

    # -- reprocessing: the person's current import driven again from one stage ---------------
    async def reopen(self, job_id: str, from_stage: str) -> Moved:
        """Roll a complete import back to the state before ``from_stage`` and return that stage's
        trigger (`soulprint reprocess`): parse and chunks re-read the export (Postgres holds
        chunks, not messages), so the import goes back to queued and every pass after it follows
        again; facts forgets the job's extractions and sends its chunks again; consolidate, memory
        and sections roll the full pass back to the stage before. Every stage is idempotent and
        the response cache answers unchanged requests, so the rows come out the same. Refused
        (Moved(None)) unless the job is the person's current import, nothing newer of the person
        is open, no pass of it is running and it has no dead letter."""
        async with self.pool.acquire() as conn, conn.transaction():
            user_id = await _lock_person(conn, job_id)
            row = await conn.fetchrow(
                f"""
                SELECT j.* FROM import_jobs j JOIN people p ON p.current_job_id = j.job_id
                 WHERE j.job_id = $1 AND j.status = 'complete' AND j.dead_letters = 0
                   AND j.quick_status NOT IN ('pending', 'running') AND j.full_pass_status <> 'processing'
                   AND NOT EXISTS (SELECT 1 FROM import_jobs o, import_jobs me
                                    WHERE me.job_id = j.job_id AND o.user_id = me.user_id
                                      AND o.status <> 'failed' AND {_NEWER.replace('j.', 'o.')})
                   FOR UPDATE OF j
                """,
                job_id,
            )
            if user_id is None or row is None:
                return Moved(None)
            job = Job.from_row(row)
            if from_stage in ("parse", "chunks"):
                await conn.execute(
                    "UPDATE import_jobs SET status = 'queued', stage = 'queued', ingest_done = false,"
                    " claimed_at = NULL, redrives = 0, updated_at = now(), quick_status = 'pending',"
                    " quick_error = NULL, full_pass_status = 'pending', full_pass_stage = NULL,"
                    " full_pass_error = NULL, full_pass_redrives = 0 WHERE job_id = $1",
                    job_id,
                )
                return Moved(job, [ImportRequested(job_id=job_id, user_id=user_id, source_uri=job.source_uri,
                                                   requested_at=job.created_at.timestamp())])
            if job.full_pass_status not in (FullPassStatus.COMPLETE, FullPassStatus.FAILED):
                return Moved(None)  # skipped (a small export) or never started: no full pass to re-drive
            state = {"facts": FullPassStage.FACTS, "consolidate": FullPassStage.CONSOLIDATING,
                     "memory": FullPassStage.MEMORY, "sections": FullPassStage.SECTIONS}[from_stage]
            if state == FullPassStage.FACTS:
                await conn.execute("DELETE FROM fact_extractions WHERE job_id = $1", job_id)
            back = {FullPassStage.FACTS: FullPassStage.FACTS, FullPassStage.CONSOLIDATING: FullPassStage.FACTS,
                    FullPassStage.MEMORY: FullPassStage.CONSOLIDATING,
                    FullPassStage.SECTIONS: FullPassStage.MEMORY}[state]
            await conn.execute(
                "UPDATE import_jobs SET full_pass_status = 'processing', full_pass_stage = $2, full_pass_error = NULL,"
                " full_pass_redrives = 0, full_pass_started_at = now(), full_pass_moved_at = now(),"
                " full_pass_finished_at = NULL, updated_at = now() WHERE job_id = $1",
                job_id, back,
            )
            memory = await conn.fetchval("SELECT memory_md FROM memories WHERE job_id = $1", job_id)
        if state == FullPassStage.FACTS:
            return await self.redrive_extraction(job_id, 1 << 30)
        trigger = {FullPassStage.CONSOLIDATING: FactsExtracted(job_id=job_id, user_id=user_id, facts=job.facts_total),
                   FullPassStage.MEMORY: FactsConsolidated(job_id=job_id, user_id=user_id,
                                                           consolidated=job.consolidated_total),
                   FullPassStage.SECTIONS: MemoryWritten(job_id=job_id, user_id=user_id, memory_md=memory or "")}
        return Moved(job, [trigger[state]])

    @staticmethod
    async def _get(conn: asyncpg.Connection, job_id: str) -> Job:
        return Job.from_row(await conn.fetchrow("SELECT * FROM import_jobs WHERE job_id = $1", job_id))


