"""Soulprints and MEMORY: the person's current soulprint, every version, each job's MEMORY.

The current soulprint always comes from the person's newest import that has
not failed: a version of an older job never replaces a newer job's, and a
failed job's version is replaced by the current import's latest one.
"""

from __future__ import annotations

from typing import Any, Sequence

import asyncpg

from soulprint.models.llm import LLMRequest, LLMResult
from soulprint.models.sections import FILE_NAMES

_SECTIONS = tuple(FILE_NAMES.values())  # SOUL, IDENTITY, USER, AGENTS, TOOLS: their columns


async def latest_version(conn: asyncpg.Connection, user_id: str) -> asyncpg.Record | None:
    """The latest rendered version of the person's current import (what a failed job's is replaced by)."""
    return await conn.fetchrow(
        """
        SELECT v.* FROM soulprint_versions v JOIN people p ON p.user_id = v.user_id AND p.current_job_id = v.job_id
         WHERE v.user_id = $1 AND v.rendered IS NOT NULL ORDER BY v.version DESC LIMIT 1
        """,
        user_id,
    )


async def restore_current(conn: asyncpg.Connection, user_id: str, failed_job_id: str) -> None:
    """If the person's soulprint comes from ``failed_job_id``, put back the current import's
    latest version (none: the person had no complete import, so no soulprint either)."""
    row = await conn.fetchrow("SELECT job_id FROM soulprints WHERE user_id = $1 FOR UPDATE", user_id)
    if row is None or row["job_id"] != failed_job_id:
        return
    latest = await latest_version(conn, user_id)
    if latest is None:
        await conn.execute("DELETE FROM soulprints WHERE user_id = $1", user_id)
        return
    r = latest["rendered"]
    await conn.execute(
        """
        UPDATE soulprints SET job_id = $2, version = $3, sections = $4, soul_md = $5, identity_md = $6,
               user_md = $7, agents_md = $8, tools_md = $9, memory_md = $10, soulprint_text = $11,
               offline = $12, updated_at = now()
         WHERE user_id = $1
        """,
        user_id, latest["job_id"], latest["version"], latest["sections"], *(r[s] for s in _SECTIONS),
        latest["memory_md"], latest["soulprint_text"], latest["offline"],
    )


class Soulprints:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def store(self, *, user_id: str, job_id: str, version: int, sections: dict, rendered: dict[str, str],
                    soulprint_text: str, memory_md: str | None, offline: bool,
                    made_by: Sequence[tuple[LLMRequest, LLMResult]] = ()) -> bool:
        """Swap in a soulprint version: all sections, the composite text and the version at once.

        ``made_by``: the requests that wrote it and their answers; the version records each task's
        prompt version and the model that answered (a reprocess with the same ones is served
        from the response cache).

        Not for a failed job; never over a newer job's version, nor over a newer
        version of the same job (a replay). The job row is held FOR KEY SHARE,
        so a failing job's cleanup (FOR UPDATE) runs before or after, never between.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            live = await conn.fetchval(
                "SELECT status <> 'failed' FROM import_jobs WHERE job_id = $1 FOR KEY SHARE", job_id
            )
            if not live:
                return False
            await conn.execute(
                """
                INSERT INTO soulprint_versions (user_id, job_id, version, sections, memory_md, soulprint_text,
                       offline, rendered, prompt_versions, models)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                ON CONFLICT (user_id, job_id, version) DO UPDATE
                   SET sections = EXCLUDED.sections, memory_md = EXCLUDED.memory_md,
                       soulprint_text = EXCLUDED.soulprint_text, offline = EXCLUDED.offline,
                       rendered = EXCLUDED.rendered, prompt_versions = EXCLUDED.prompt_versions,
                       models = EXCLUDED.models
                """,
                user_id, job_id, version, sections, memory_md, soulprint_text, offline, rendered,
                {req.task: req.prompt_version for req, _ in made_by},
                {req.task: f"{res.provider}:{res.model}" for req, res in made_by},
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
                 WHERE CASE WHEN s.job_id = EXCLUDED.job_id THEN s.version <= EXCLUDED.version
                       ELSE NOT EXISTS (  -- the stored version's job is newer than this one
                           SELECT 1 FROM import_jobs cur, import_jobs mine
                            WHERE cur.job_id = s.job_id AND mine.job_id = EXCLUDED.job_id
                              AND (cur.created_at, cur.job_id) > (mine.created_at, mine.job_id)) END
                RETURNING user_id
                """,
                user_id, job_id, version, sections, *(rendered[s] for s in _SECTIONS), memory_md,
                soulprint_text, offline,
            )
            return row is not None

    async def get(self, user_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow("SELECT * FROM soulprints WHERE user_id = $1", user_id)
        return dict(row) if row else None

    async def get_memory(self, job_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow("SELECT * FROM memories WHERE job_id = $1", job_id)
        return dict(row) if row else None


async def store_memory(conn: asyncpg.Connection, job_id: str, user_id: str, memory_md: str, offline: bool) -> None:
    await conn.execute(
        "INSERT INTO memories (job_id, user_id, memory_md, offline) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (job_id) DO UPDATE SET memory_md = EXCLUDED.memory_md, offline = EXCLUDED.offline,"
        " created_at = now()",
        job_id, user_id, memory_md, offline,
    )
