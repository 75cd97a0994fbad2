"""Notices: the transactional outbox of what people's webhooks are told.

A notice is a row in ``notices`` written in the same transaction as the state
change that causes it: a committed change always has its notice, a rolled-back
one never does, and no event is published for a change that did not happen.
Job notices (soulprint.quick_ready, .complete, .failed) are written by a
trigger on import_jobs (migration 0016); erasure calls ``record_notice`` for
person.deleted. A relay (agents/notify.py) later publishes unpublished notices
to the ``notices`` topic, at least once, and marks them published.

Notice ids are deterministic (migration 0016's soulprint_notice_id), so a
replayed transition or a repeated erasure writes nothing new.

``Notices.prune`` keeps the outbox bounded: settled deliveries and published
notices older than the retention go (the reconciler calls it every pass). A
notice that may still be needed stays: one not yet published, one with a
delivery that is pending or dead (a `dlq replay` fans it out again), and one
of a person and job with a notify dead letter not yet replayed.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import AsyncIterator

import asyncpg

from soulprint.models.events import JobNotice

NOTIFY_STAGE = "notify"  # the stage the notify lane's dead letters name (agents/notify.py)
NOTICE_TYPES = ("soulprint.quick_ready", "soulprint.complete", "soulprint.failed", "person.deleted")


async def record_notice(conn: asyncpg.Connection, *, type: str, user_id: str, job_id: str | None,
                        data: dict | None = None) -> str:
    """Write a notice in the caller's transaction; its id (the same id for the same notice again).

    Unique by job for a job's notice, else by person and ``data`` (erasure: its
    receipt, which carries the erasure's time). Erasure calls this after
    deleting the person's rows, or the delete would take the notice with it.
    ``data`` must hold ids and counts, never a person's text: it is sent to
    every subscribed endpoint.
    """
    if type not in NOTICE_TYPES:
        raise ValueError(f"unknown notice type {type!r}")
    key = job_id if job_id is not None else f"{user_id}:{json.dumps(data or {}, sort_keys=True, default=str)}"
    return await conn.fetchval("SELECT soulprint_record_notice($1, $2, $3, $4::jsonb, $5)",
                               type, user_id, job_id, {"user_id": user_id, "job_id": job_id, **(data or {})}, key)


def _notice(row) -> JobNotice:
    return JobNotice(notice_id=row["notice_id"], type=row["type"], user_id=row["user_id"], job_id=row["job_id"],
                     data=row["data"], created_at=row["created_at"].timestamp())


class Notices:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def unpublished(self, limit: int) -> AsyncIterator[list[JobNotice]]:
        """``async with notices.unpublished(n) as batch:`` publish ``batch``; they are marked published
        when the block ends without an error. The rows stay locked meanwhile (SKIP LOCKED: another
        worker's relay takes others), so a crash before the mark publishes them again: at least once."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT * FROM notices WHERE published_at IS NULL ORDER BY created_at, notice_id LIMIT $1"
                " FOR UPDATE SKIP LOCKED",
                limit,
            )
            batch = [_notice(r) for r in rows]
            yield batch
            if batch:
                await conn.execute("UPDATE notices SET published_at = now() WHERE notice_id = ANY($1::text[])",
                                   [n.notice_id for n in batch])

    async def get(self, notice_id: str) -> JobNotice | None:
        row = await self.pool.fetchrow("SELECT * FROM notices WHERE notice_id = $1", notice_id)
        return _notice(row) if row else None

    async def for_job(self, job_id: str) -> list[JobNotice]:
        rows = await self.pool.fetch("SELECT * FROM notices WHERE job_id = $1 ORDER BY created_at, notice_id",
                                     job_id)
        return [_notice(r) for r in rows]

    async def prune(self, older_than_s: float, limit: int) -> tuple[int, int]:
        """Delete up to ``limit`` settled deliveries (delivered, or gone with their endpoint) and then up
        to ``limit`` published notices that nothing may still need, all older than ``older_than_s``;
        how many of each. Run again until both are below the limit to catch up."""
        async with self.pool.acquire() as conn, conn.transaction():
            deliveries = await conn.fetchval(
                """
                WITH old AS (
                    SELECT delivery_id FROM webhook_deliveries
                     WHERE status IN ('delivered', 'gone') AND updated_at < now() - make_interval(secs => $1)
                     LIMIT $2 FOR UPDATE SKIP LOCKED
                ), gone AS (DELETE FROM webhook_deliveries d USING old WHERE d.delivery_id = old.delivery_id
                            RETURNING 1)
                SELECT count(*) FROM gone
                """,
                older_than_s, limit)
            notices = await conn.fetchval(
                """
                WITH old AS (
                    SELECT n.notice_id FROM notices n
                     WHERE n.published_at < now() - make_interval(secs => $1)
                       AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.notice_id = n.notice_id)
                       AND NOT EXISTS (SELECT 1 FROM dead_letters l
                                        WHERE l.stage = $3 AND l.replayed_at IS NULL
                                          AND l.user_id = n.user_id AND l.job_id IS NOT DISTINCT FROM n.job_id)
                     LIMIT $2 FOR UPDATE OF n SKIP LOCKED
                ), gone AS (DELETE FROM notices n USING old WHERE n.notice_id = old.notice_id RETURNING 1)
                SELECT count(*) FROM gone
                """,
                older_than_s, limit, NOTIFY_STAGE)
        return deliveries, notices
