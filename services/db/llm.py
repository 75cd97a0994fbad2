"""The LLM layer's tables: response cache, usage accounting, Message Batch requests.

These implement the small protocols of services/llm (ResponseCache, UsageSink,
BatchStore); the LLM layer itself holds no SQL.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Iterable

import asyncpg
import orjson

from soulprint.services.db.erasure import ERASED_USAGE_JOB
from soulprint.services.db.jobs import PERSON_LOCK, Jobs
from soulprint.services.llm.accounting import USAGE_FIELDS, summarise
from soulprint.models.llm import Usage
from soulprint.services.llm.batch_store import RESUME_DAYS


class PostgresCache:
    """``llm_cache``. The JSON goes over the wire as text and is cast in SQL, and is read back
    as ``response::text``: that works whether or not the pool registered a jsonb codec.

    An entry is linked to the person whose request made or reused it (``llm_cache_people``: the
    request's ``user_id``, else its job's person), so erasing the person deletes it.

    A request may still be waiting on the provider when its person is erased. Its answer is then
    neither stored nor linked: the write takes the person's lock shared (the erasure holds it for
    its whole transaction), then looks again at whether the job, or the person, is still there. A
    job-scoped request whose job is gone is not stored at all, since no erasure could find it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def get(self, key: str, *, user_id: str | None = None, job_id: str | None = None) -> dict[str, Any] | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchval("SELECT response::text FROM llm_cache WHERE key = $1", key)
            if row is None:
                return None
            if user_id is not None or job_id is not None:
                async with conn.transaction():
                    owner = await _still_there(conn, user_id, job_id)
                    if owner:
                        await conn.execute("INSERT INTO llm_cache_people (key, user_id) SELECT key, $2"
                                           " FROM llm_cache WHERE key = $1 ON CONFLICT DO NOTHING", key, owner)
        return orjson.loads(row)

    async def put(self, key: str, provider: str, model: str, response: dict[str, Any], *,
                  user_id: str | None = None, job_id: str | None = None) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            owner = await _still_there(conn, user_id, job_id)
            if owner is False:
                return  # erased (or never was) meanwhile: the answer is theirs and goes with them
            await conn.execute(
                "INSERT INTO llm_cache (key, provider, model, response) VALUES ($1, $2, $3, $4::text::jsonb)"
                " ON CONFLICT (key) DO UPDATE SET response = EXCLUDED.response, created_at = now()",
                key, provider, model, orjson.dumps(response).decode())
            if owner:
                await conn.execute("INSERT INTO llm_cache_people (key, user_id) VALUES ($1, $2)"
                                   " ON CONFLICT DO NOTHING", key, owner)


async def _still_there(conn: asyncpg.Connection, user_id: str | None, job_id: str | None) -> str | None | bool:
    """The person a cache entry belongs to, once no erasure of theirs is running: their id; None for a
    request of nobody's; False when the job (or, without a job, the person) is no longer there."""
    if job_id is not None:
        owner = await _job_owner(conn, job_id, user_id)
        return owner if owner is not None else False
    if user_id is None:
        return None
    await _wait_out_erasure(conn, user_id)
    there = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM import_jobs WHERE user_id = $1)"
                                " OR EXISTS (SELECT 1 FROM api_tokens WHERE user_id = $1)", user_id)
    return user_id if there else False


async def _job_owner(conn: asyncpg.Connection, job_id: str, user_id: str | None = None) -> str | None:
    """The job's person (``user_id`` if the request names one), once no erasure of theirs is running;
    None if the job is gone."""
    owner = user_id or await conn.fetchval("SELECT user_id FROM import_jobs WHERE job_id = $1", job_id)
    if owner is None:
        return None
    await _wait_out_erasure(conn, owner)
    there = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM import_jobs WHERE job_id = $1)", job_id)
    return owner if there else None


async def _wait_out_erasure(conn: asyncpg.Connection, user_id: str) -> None:
    """The person's lock, shared, to the end of the transaction: an erasure (which holds it for its
    whole transaction) has committed before the caller looks again. Shared holders never wait for
    each other; they wait only for an erasure or a transition of the person (services/db/jobs.py)."""
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1, hashtext($2))", PERSON_LOCK, user_id)


class PostgresUsageSink:
    """Upserts into ``llm_usage``, adding to the row (rows accumulate on purpose)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record(self, job_id: str | None, stage: str, provider: str, model: str, usage: Usage) -> None:
        """Add ``usage`` to the job's row; a job erased while its request ran adds to the anonymous
        rows the erasure keeps (its cost stays counted, its id does not come back)."""
        async with self.pool.acquire() as conn, conn.transaction():
            if job_id and await _job_owner(conn, job_id) is None:
                job_id = ERASED_USAGE_JOB
            await self._add(conn, job_id, stage, provider, model, usage)

    @staticmethod
    async def _add(conn: asyncpg.Connection, job_id: str | None, stage: str, provider: str, model: str,
                   usage: Usage) -> None:
        await conn.execute(
            """
            INSERT INTO llm_usage (job_id, stage, provider, model, requests, cache_hits, throttled,
                                   input_tokens, output_tokens, cache_creation_input_tokens,
                                   cache_read_input_tokens, cost_usd)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
            ON CONFLICT (job_id, stage, provider, model) DO UPDATE SET
                requests = llm_usage.requests + EXCLUDED.requests,
                cache_hits = llm_usage.cache_hits + EXCLUDED.cache_hits,
                throttled = llm_usage.throttled + EXCLUDED.throttled,
                input_tokens = llm_usage.input_tokens + EXCLUDED.input_tokens,
                output_tokens = llm_usage.output_tokens + EXCLUDED.output_tokens,
                cache_creation_input_tokens = llm_usage.cache_creation_input_tokens
                                              + EXCLUDED.cache_creation_input_tokens,
                cache_read_input_tokens = llm_usage.cache_read_input_tokens + EXCLUDED.cache_read_input_tokens,
                cost_usd = llm_usage.cost_usd + EXCLUDED.cost_usd,
                updated_at = now()
            """,
            job_id or "", stage, provider, model, usage.requests, usage.cache_hits, usage.throttled,
            usage.input_tokens, usage.output_tokens, usage.cache_creation_input_tokens,
            usage.cache_read_input_tokens,
            # numeric column: exact running sums, no float drift over thousands of rows
            Decimal(repr(round(usage.cost_usd, 10))),
        )


async def usage_for_job(pool: asyncpg.Pool, job_id: str) -> dict[str, Any]:
    """``{"job_id", "stages": {stage: {..., "by_model": {...}}}, "total": {...}}`` from ``llm_usage``."""
    rows = await pool.fetch(
        f"SELECT stage, provider, model, {', '.join(USAGE_FIELDS)} FROM llm_usage WHERE job_id = $1 "
        "ORDER BY stage, provider, model",
        job_id,
    )
    items = []
    for r in rows:
        u = Usage(**{c: (float(r[c]) if c == "cost_usd" else int(r[c])) for c in USAGE_FIELDS})
        items.append((r["stage"], r["provider"], r["model"], u))
    return summarise(job_id, items)


class PostgresBatchStore:
    """``llm_batch_requests``: which Message Batch each submitted request went into."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.jobs = Jobs(pool)

    async def pending(self, endpoint: str, custom_ids: list[str]) -> dict[str, str]:
        rows = await self.pool.fetch(
            f"""
            SELECT DISTINCT ON (custom_id) custom_id, batch_id
              FROM llm_batch_requests
             WHERE endpoint = $1 AND custom_id = ANY($2::text[])
               AND submitted_at > now() - interval '{RESUME_DAYS} days'
             ORDER BY custom_id, submitted_at DESC
            """,
            endpoint, custom_ids,
        )
        return {r["custom_id"]: r["batch_id"] for r in rows}

    async def remember(self, endpoint: str, batch_id: str, custom_ids: list[str], job_ids: list[str]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"DELETE FROM llm_batch_requests WHERE submitted_at < now() - interval '{RESUME_DAYS} days'"
            )
            await conn.execute(
                """
                INSERT INTO llm_batch_requests (endpoint, batch_id, custom_id, job_id)
                SELECT $1, $2, c, j FROM unnest($3::text[], $4::text[]) AS x(c, j)
                ON CONFLICT DO NOTHING
                """,
                endpoint, batch_id, custom_ids, job_ids,
            )

    async def claim(self, endpoint: str, batch_id: str, custom_ids: list[str]) -> set[str]:
        rows = await self.pool.fetch(
            "DELETE FROM llm_batch_requests WHERE endpoint = $1 AND batch_id = $2 AND custom_id = ANY($3::text[])"
            " RETURNING custom_id",
            endpoint, batch_id, custom_ids,
        )
        return {r["custom_id"] for r in rows}

    async def keepalive(self, job_ids: Iterable[str]) -> None:
        # A batch can take hours; waiting on one that is alive is not a stall
        # (the wait itself is bounded by batch_max_wait_s). The job's clock is
        # the state machine's to move.
        await self.jobs.keepalive_full_pass(list(job_ids))
