"""Uploaded exports' jobs: create one unless the same export of the person is still running; read a job's
status with its revision (the id of its server-sent events).

"Running" is "not finished" (models.jobs.Job.finished): the import itself, or
its quick pass, full pass or embedding, still open. A running job whose row
has not moved for ``stale_s`` no longer blocks: the new job is created and the
caller supersedes the old one (db.jobs.fail with 'superseded').
"""

from __future__ import annotations

import asyncpg

from soulprint.models.jobs import Job
from soulprint.services.db.jobs import PERSON_LOCK

_RUNNING = """
    (status IN ('queued', 'parsing', 'chunking')
     OR (status = 'complete' AND (quick_status IN ('pending', 'running')
                                  OR full_pass_status IN ('pending', 'processing')
                                  OR embedding_status IN ('pending', 'processing'))))
"""


class DuplicateImport(Exception):
    """The same export (same person, same SHA-256) is already being imported by ``job_id``."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"this export is already being imported by job {job_id}")
        self.job_id = job_id


class Uploads:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create_job(self, job_id: str, user_id: str, source_uri: str, *, sha256: str, size: int,
                         stale_s: float) -> list[str]:
        """Insert the queued job of a stored export; returns the stale running jobs of the same export
        (the caller supersedes them). DuplicateImport when a fresh one runs. Under the person's lock, so
        two uploads of one export at once make one job. A job id that exists already is left as it is."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", PERSON_LOCK, user_id)
            rows = await conn.fetch(
                f"""
                SELECT job_id,
                       greatest(updated_at, full_pass_moved_at, embedding_moved_at)
                           < now() - make_interval(secs => $4) AS stale
                  FROM import_jobs
                 WHERE user_id = $1 AND sha256 = $2 AND job_id <> $3 AND {_RUNNING}
                 ORDER BY created_at DESC, job_id DESC
                """,
                user_id, sha256, job_id, stale_s,
            )
            fresh = [r["job_id"] for r in rows if not r["stale"]]
            if fresh:
                raise DuplicateImport(fresh[0])
            await conn.execute(
                "INSERT INTO import_jobs (job_id, user_id, source_uri, sha256, export_bytes) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (job_id) DO NOTHING",
                job_id, user_id, source_uri, sha256, size,
            )
            return [r["job_id"] for r in rows]

    async def status(self, job_id: str, user_id: str) -> tuple[int, Job] | None:
        """The person's job and its revision; None for an unknown job or another person's."""
        row = await self.pool.fetchrow("SELECT * FROM import_jobs WHERE job_id = $1 AND user_id = $2",
                                       job_id, user_id)
        return (row["revision"], Job.from_row(row)) if row else None
