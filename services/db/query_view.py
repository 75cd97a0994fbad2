"""The query service's own view of each person's current soulprint (table query_soulprints).

Filled from events, at least once and in no guaranteed order across topics:
`sections` (keyed by user) and `memory` (keyed by job) may arrive in either
order, twice, or replayed long after. So each write is an upsert that only
moves forward, decided like services/db/soulprints.py ``store``: within a job
a higher (or equal) version wins, across jobs the newer import (created_at,
job_id) wins, and a failed job's version is never taken. MEMORY belongs to
its job: a sections event takes the job's stored MEMORY (memories), a memory
event fills it into a row of the same job, and a later version of that job
keeps it. Both writes take one per-person transaction lock, so a memory event
and a sections event of one person never interleave.
"""

from __future__ import annotations

import asyncpg

from soulprint.models.events import MemoryWritten, SectionsPublished
from soulprint.models.sections import FILE_NAMES
from soulprint.models.view import SoulprintView
from soulprint.services.db import soulprints

SECTION_NAMES = tuple(FILE_NAMES.values())  # SOUL, IDENTITY, USER, AGENTS, TOOLS: the order of the prompt's prefix
_LOCK_SPACE = 0x5017  # pg_advisory_xact_lock(space, hashtext(user)): one writer per person's row


async def restore(conn: asyncpg.Connection, user_id: str, failed_job_id: str) -> None:
    """The view follows soulprints.restore_current when a job fails: if the view shows the failed
    job, it shows the current import's latest version instead (or nothing, if there is none).
    In the failing transaction, so no reader sees a failed job's soulprint after the failure."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK_SPACE, user_id)
    shown = await conn.fetchval("SELECT job_id FROM query_soulprints WHERE user_id = $1", user_id)
    if shown != failed_job_id:
        return
    latest = await soulprints.latest_version(conn, user_id)
    if latest is None:
        await conn.execute("DELETE FROM query_soulprints WHERE user_id = $1", user_id)
        return
    await conn.execute(
        "UPDATE query_soulprints SET job_id = $2, version = $3, sections = $4, offline = $5, made_at = $6,"
        " memory_md = (SELECT memory_md FROM memories WHERE job_id = $2), updated_at = now() WHERE user_id = $1",
        user_id, latest["job_id"], latest["version"],
        {n: latest["rendered"][n] for n in SECTION_NAMES if n in latest["rendered"]},
        latest["offline"], latest["created_at"],
    )


class QueryView:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def apply_sections(self, event: SectionsPublished) -> bool:
        """Take a published version unless the view holds a newer one; True if the row changed."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK_SPACE, event.user_id)
            # FOR KEY SHARE: a failing job's cleanup (FOR UPDATE) runs before or after, never between.
            live = await conn.fetchval(
                "SELECT status <> 'failed' FROM import_jobs WHERE job_id = $1 AND user_id = $2 FOR KEY SHARE",
                event.job_id, event.user_id,
            )
            if not live:
                return False
            sections = dict(event.sections) or await conn.fetchval(  # an event from before `sections` existed
                "SELECT rendered FROM soulprint_versions WHERE user_id = $1 AND job_id = $2 AND version = $3",
                event.user_id, event.job_id, event.version,
            )
            if not sections:
                return False
            row = await conn.fetchrow(
                """
                INSERT INTO query_soulprints AS q (user_id, job_id, version, sections, memory_md, offline, made_at)
                VALUES ($1, $2, $3, $4, (SELECT memory_md FROM memories WHERE job_id = $2), $5,
                        coalesce((SELECT created_at FROM soulprint_versions
                                   WHERE user_id = $1 AND job_id = $2 AND version = $3), now()))
                ON CONFLICT (user_id) DO UPDATE
                   SET job_id = EXCLUDED.job_id, version = EXCLUDED.version, sections = EXCLUDED.sections,
                       memory_md = CASE WHEN q.job_id = EXCLUDED.job_id THEN coalesce(EXCLUDED.memory_md, q.memory_md)
                                        ELSE EXCLUDED.memory_md END,
                       offline = EXCLUDED.offline, updated_at = now(),
                       made_at = CASE WHEN (q.job_id, q.version) = (EXCLUDED.job_id, EXCLUDED.version) THEN q.made_at
                                      ELSE EXCLUDED.made_at END
                 WHERE CASE WHEN q.job_id = EXCLUDED.job_id THEN q.version <= EXCLUDED.version
                       ELSE NOT EXISTS (  -- the stored version's job is newer than this one
                           SELECT 1 FROM import_jobs cur, import_jobs mine
                            WHERE cur.job_id = q.job_id AND mine.job_id = EXCLUDED.job_id
                              AND (cur.created_at, cur.job_id) > (mine.created_at, mine.job_id)) END
                   AND (q.job_id, q.version, q.sections, q.memory_md, q.offline)  -- a replay changes nothing
                       IS DISTINCT FROM (EXCLUDED.job_id, EXCLUDED.version, EXCLUDED.sections,
                                         coalesce(EXCLUDED.memory_md, q.memory_md), EXCLUDED.offline)
                RETURNING user_id
                """,
                event.user_id, event.job_id, event.version, sections, event.offline,
            )
            return row is not None

    async def apply_memory(self, event: MemoryWritten) -> bool:
        """Give the job's MEMORY to the view's row of that job; True if the row changed.

        The stored MEMORY (memories) wins over the event's, so a stale replay changes
        nothing. No row of that job yet: its sections event takes MEMORY when it comes."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK_SPACE, event.user_id)
            row = await conn.fetchrow(
                """
                WITH m AS (SELECT coalesce((SELECT memory_md FROM memories WHERE job_id = $2), $3) AS md)
                UPDATE query_soulprints SET memory_md = m.md, updated_at = now() FROM m
                 WHERE user_id = $1 AND job_id = $2 AND memory_md IS DISTINCT FROM m.md RETURNING user_id
                """,
                event.user_id, event.job_id, event.memory_md,
            )
            return row is not None

    async def caught_up(self, user_id: str) -> bool:
        """Whether the view shows the version the pipeline holds as the person's soulprint."""
        return bool(await self.pool.fetchval(
            "SELECT s.job_id IS NOT DISTINCT FROM q.job_id AND s.version IS NOT DISTINCT FROM q.version"
            "  FROM (SELECT $1::text AS user_id) u"
            "  LEFT JOIN soulprints s ON s.user_id = u.user_id LEFT JOIN query_soulprints q ON q.user_id = u.user_id",
            user_id,
        ))

    async def get(self, conn: asyncpg.Connection, user_id: str) -> SoulprintView | None:
        """The person's current soulprint, on ``conn`` (a reader session's)."""
        row = await conn.fetchrow(
            "SELECT user_id, job_id, version, offline, sections, memory_md, made_at FROM query_soulprints"
            " WHERE user_id = $1",
            user_id,
        )
        if row is None:
            return None
        stored = row["sections"]  # jsonb keeps no key order: give back the sections' own
        return SoulprintView(**{**dict(row), "sections": {n: stored[n] for n in SECTION_NAMES if n in stored}})
