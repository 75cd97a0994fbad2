"""Facts: per-chunk extraction rows, the facts themselves, and the consolidated picture.

Writes that move a job's progress (``write``) run inside the job transition
that counts them (services/db/jobs.py); reads go straight to the pool.
"""

from __future__ import annotations

from typing import Sequence

import asyncpg

from soulprint.models.facts import ConsolidatedFact, Fact
from soulprint.models.text import one_line
from soulprint.services.db.pool import ts


FACT_COLUMNS = ["fact_id", "user_id", "job_id", "chunk_id", "conversation_id", "message_ids", "category", "text",
                 "subject", "project", "date", "context", "message_at", "ordinal"]


async def write(conn: asyncpg.Connection, job_id: str, chunk_ids: Sequence[str], facts: Sequence[Fact],
                dropped: dict[str, int]) -> None:
    """Replace the facts of these chunks (idempotent per chunk) and mark them done.

    ``dropped``: facts of the answer that named no chunk of its request, counted
    on the chunk the answer's count is kept with.
    """
    await conn.execute("DELETE FROM facts WHERE job_id = $1 AND chunk_id = ANY($2::uuid[])", job_id, list(chunk_ids))
    if facts:
        # COPY goes to a staging table: Postgres refuses COPY FROM into a table under
        # row-level security (facts is, forced, for a non-superuser owner: 0010_access.sql).
        await conn.execute("CREATE TEMP TABLE IF NOT EXISTS fact_stage (LIKE facts) ON COMMIT DELETE ROWS")
        await conn.copy_records_to_table(
            "fact_stage",
            columns=FACT_COLUMNS,
            records=[
                (f.fact_id, f.user_id, f.job_id, f.chunk_id, f.conversation_id, f.message_ids, f.category,
                 f.text, f.subject, f.project, f.date, f.context, ts(f.message_time), f.ordinal)
                for f in facts
            ],
        )
        columns = ", ".join(FACT_COLUMNS)
        await conn.execute(f"INSERT INTO facts ({columns}) SELECT {columns} FROM fact_stage")
    per_chunk: dict[str, int] = dict.fromkeys(chunk_ids, 0)
    for f in facts:
        per_chunk[f.chunk_id] = per_chunk.get(f.chunk_id, 0) + 1
    await conn.execute(
        """
        INSERT INTO fact_extractions (job_id, chunk_id, status, facts, dropped)
        SELECT $1, c, 'done', n, d FROM unnest($2::uuid[], $3::int[], $4::int[]) AS x(c, n, d)
        ON CONFLICT (job_id, chunk_id) DO UPDATE
           SET status = 'done', facts = EXCLUDED.facts, dropped = EXCLUDED.dropped, error = NULL,
               updated_at = now()
        """,
        job_id, list(per_chunk), list(per_chunk.values()), [dropped.get(c, 0) for c in per_chunk],
    )


async def delete_job_rows(conn: asyncpg.Connection, job_ids: Sequence[str]) -> None:
    """A retired or failed job's facts: extraction rows, facts, the consolidated picture."""
    for table in ("fact_extractions", "facts", "consolidated_facts"):
        await conn.execute(f"DELETE FROM {table} WHERE job_id = ANY($1::text[])", list(job_ids))


class Facts:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def extraction_failed(self, job_id: str, chunk_ids: Sequence[str], error: str) -> None:
        await self.pool.execute(
            """
            INSERT INTO fact_extractions (job_id, chunk_id, status, error)
            SELECT j.job_id, c, 'failed', $3 FROM import_jobs j CROSS JOIN unnest($2::uuid[]) AS c
             WHERE j.job_id = $1
               FOR KEY SHARE OF j  -- after an erasure (FOR UPDATE) there is no job: nothing is written
            ON CONFLICT (job_id, chunk_id) DO UPDATE
               SET attempts = fact_extractions.attempts + 1, error = EXCLUDED.error, updated_at = now()
             WHERE fact_extractions.status = 'failed'
            """,
            job_id, list(chunk_ids), one_line(error),
        )

    async def load(self, job_id: str) -> list[Fact]:
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

    async def load_consolidated(self, job_id: str) -> list[ConsolidatedFact]:
        rows = await self.pool.fetch("SELECT fact FROM consolidated_facts WHERE job_id = $1 ORDER BY position", job_id)
        return [ConsolidatedFact.from_dict(r["fact"]) for r in rows]


async def store_consolidated(conn: asyncpg.Connection, job_id: str, user_id: str,
                             facts: Sequence[ConsolidatedFact]) -> None:
    await conn.execute("DELETE FROM consolidated_facts WHERE job_id = $1", job_id)
    await conn.executemany(
        "INSERT INTO consolidated_facts (job_id, user_id, key, category, position, fact)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        [(job_id, user_id, f.key, f.category, i, f.to_dict()) for i, f in enumerate(facts)],
    )
