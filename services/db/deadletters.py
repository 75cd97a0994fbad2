"""Dead letters in Postgres: where each came from, why, whether it was replayed, and the job's count.

The message itself lives on the dead-letter topic (services/deadletters.py);
these rows make the bookkeeping durable and idempotent. Recording the same
letter twice (a redelivered poison message has the same source offset, so
the same id) counts it once; marking it replayed twice uncounts it once.
While a job has letters not yet replayed it is blocked: the reconciler
leaves it alone (Jobs.stalled) and status shows the count and last reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from soulprint.models.text import one_line
from soulprint.services.db.erasure import person_hash


@dataclass(frozen=True)
class LetterRow:
    letter_id: str
    user_id: str | None
    job_id: str | None
    stage: str
    source_topic: str
    source_partition: int
    source_offset: int
    error_class: str
    error_message: str
    attempts: int
    failed_at: datetime
    replayed_at: datetime | None

    def to_json(self) -> dict:
        return {
            "id": self.letter_id, "user_id": self.user_id, "job_id": self.job_id, "stage": self.stage,
            "topic": self.source_topic, "partition": self.source_partition, "offset": self.source_offset,
            "error_class": self.error_class, "error_message": self.error_message, "attempts": self.attempts,
            "failed_at": self.failed_at.isoformat(), "replayed": self.replayed_at is not None,
            "replayed_at": self.replayed_at.isoformat() if self.replayed_at else None,
        }


class DeadLetterRows:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record(self, *, letter_id: str, user_id: str | None, job_id: str | None, stage: str, topic: str,
                     partition: int, offset: int, error_class: str, error_message: str, attempts: int,
                     blocks_job: bool) -> bool:
        """Store a letter; the first time, count it on its job (when it blocks one). True if new.

        Not stored for a job erased while its message failed: the job row is read FOR KEY SHARE,
        so an erasure (FOR UPDATE on it) has committed first and its ledger says so."""
        async with self.pool.acquire() as conn, conn.transaction():
            if job_id is not None and user_id is not None and await conn.fetchval(
                    "SELECT NOT EXISTS (SELECT 1 FROM import_jobs WHERE job_id = $1 FOR KEY SHARE)"
                    " AND EXISTS (SELECT 1 FROM erased_people WHERE person_hash = $2)",
                    job_id, person_hash(user_id)):
                return False
            new = await conn.fetchval(
                """
                INSERT INTO dead_letters (letter_id, user_id, job_id, stage, source_topic, source_partition,
                       source_offset, error_class, error_message, attempts, blocks_job)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                ON CONFLICT (letter_id) DO NOTHING
                RETURNING true
                """,
                letter_id, user_id, job_id, stage, topic, partition, offset, error_class,
                one_line(error_message, 500), attempts, blocks_job and job_id is not None,
            )
            if new and blocks_job and job_id is not None:
                await conn.execute(
                    "UPDATE import_jobs SET dead_letters = dead_letters + 1, dead_letter_error = $2, updated_at = now()"
                    " WHERE job_id = $1",
                    job_id, one_line(f"{stage}: {error_class}: {error_message}", 1000),
                )
            return bool(new)

    async def mark_replayed(self, letter_id: str) -> bool:
        """The letter was sent back to its topic: it no longer blocks its job. True the first time."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE dead_letters SET replayed_at = now() WHERE letter_id = $1 AND replayed_at IS NULL"
                " RETURNING job_id, blocks_job",
                letter_id,
            )
            if row is None:
                return False
            if row["blocks_job"]:
                # The job moved again (updated_at): its stall clock starts afresh.
                await conn.execute(
                    "UPDATE import_jobs SET dead_letters = greatest(0, dead_letters - 1), updated_at = now(),"
                    " full_pass_moved_at = CASE WHEN full_pass_status = 'processing' THEN now()"
                    " ELSE full_pass_moved_at END WHERE job_id = $1",
                    row["job_id"],
                )
            return True

    async def get(self, letter_id: str) -> LetterRow | None:
        row = await self.pool.fetchrow("SELECT * FROM dead_letters WHERE letter_id = $1", letter_id)
        return _row(row) if row else None

    async def replayed(self, letter_ids: list[str]) -> set[str]:
        rows = await self.pool.fetch(
            "SELECT letter_id FROM dead_letters WHERE letter_id = ANY($1::text[]) AND replayed_at IS NOT NULL",
            letter_ids,
        )
        return {r["letter_id"] for r in rows}

    async def all(self) -> list[LetterRow]:
        rows = await self.pool.fetch(
            "SELECT " + ", ".join(LetterRow.__dataclass_fields__) + " FROM dead_letters ORDER BY failed_at, letter_id")
        return [_row(r) for r in rows]


def _row(row) -> LetterRow:
    return LetterRow(**{name: row[name] for name in LetterRow.__dataclass_fields__})
