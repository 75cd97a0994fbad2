"""A person's complete import written straight to Postgres: the job, the person, micro chunks.

For retrieval tests that need many chunks fast (binary COPY, no pipeline). Chunk i is the
(i % 20)-th micro chunk of conversation ``conv-{i // 20}``, its message ``m{i}`` sent i hours
after ``T0``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Sequence

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


async def add_person(db, user: str, contents: Sequence[str], *, tokens: int, job: dict) -> tuple[str, list[str]]:
    """``job``: the import_jobs columns beyond id, person, source and status (all complete).
    Returns the job id and the chunk ids, in order."""
    job_id = f"job-{user}"
    columns = ["job_id", "user_id", "source_uri", "status", *job]
    values = ", ".join(f"${i + 1}" for i in range(len(columns)))
    await db.pool.execute(f"INSERT INTO import_jobs ({', '.join(columns)}) VALUES ({values})",
                          job_id, user, "test", "complete", *job.values())
    await db.pool.execute("INSERT INTO people (user_id, current_job_id) VALUES ($1, $2)", user, job_id)
    ids = [str(uuid.uuid4()) for _ in contents]
    await db.pool.copy_records_to_table(
        "conversation_chunks",
        columns=["chunk_id", "user_id", "job_id", "conversation_id", "tier", "chunk_index", "content",
                 "token_count", "message_ids", "message_at"],
        records=[(uuid.UUID(c), user, job_id, f"conv-{i // 20}", "micro", i % 20, text, tokens, [f"m{i}"],
                  T0 + timedelta(hours=i)) for i, (c, text) in enumerate(zip(ids, contents))])
    return job_id, ids
