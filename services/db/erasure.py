"""Erasure in Postgres: delete every row about a person in one transaction, and the ledger every stage checks.

Which tables: found from the catalog, not from a list. Every table of the
schema with a ``user_id`` column loses the person's rows, and every table with
a ``job_id`` column loses the rows of the person's jobs, so a table added later
(by any module) is covered the day it exists. Tables are emptied children
first (foreign keys), so a cascade never hides a count. Only the tables that
need more than a DELETE are named here (SPECIAL), and the tables with neither
column that are known to hold no person's text (IMPERSONAL);
tests/test_erasure.py fails for any other table without a person column.

The ledger (``erased_people``) keeps a hash of the id and the time. A stage
asks ``drops(event)`` before working on an event: an event whose job no
longer exists, or (without a job) whose person was erased after the event was
made, is acknowledged and ignored, so a replay or redelivery brings nothing
back. ImportRequested is judged by its ``requested_at``: one requested before
the erasure is dropped; a new import requested after it is the person coming
back, and runs.
"""

from __future__ import annotations

import graphlib
import hashlib
from datetime import datetime

import asyncpg

from soulprint.models.events import ImportRequested
from soulprint.services.db.jobs import PERSON_LOCK
from soulprint.services.db.notices import record_notice

# llm_usage rows lose their job (the person's link) but keep their numbers, summed into one row per
# stage and model under this job id: the operator's cost history stays whole.
ERASED_USAGE_JOB = "(erased)"

# Tables with neither column that hold no person's text (their reason), and the ones erasure reaches
# through another table. Anything else without a person column is a leak (tests/test_erasure.py).
IMPERSONAL = {
    "schema_migrations": "migration names",
    "erased_people": "the ledger: hashes of erased ids and times",
    "webhook_endpoints": "the operator's endpoints: url, secret, event types",
}
SPECIAL = {
    "llm_cache": "keyed by request hash; its entries of the person are found through llm_cache_people",
    "llm_usage": "numbers kept under job '(erased)', the person's job ids removed",
    "search_indexes": "each row names an HNSW index of the person's vectors: the index is dropped too",
    "notices": "the person.deleted notice itself stays: it tells subscribers whom to erase",
    "webhook_deliveries": "the person.deleted deliveries stay, as their notice",
}
# The rows a sweep leaves: the erasure's own notice (and its deliveries) name the person on purpose.
KEPT = {"notices": "type = 'person.deleted'", "webhook_deliveries": "type = 'person.deleted'"}

_PERSON_TABLES = """
SELECT c.relname AS name, bool_or(a.attname = 'user_id') AS by_user, bool_or(a.attname = 'job_id') AS by_job
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND NOT a.attisdropped
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relnamespace = current_schema()::regnamespace
   AND a.attname IN ('user_id', 'job_id')
 GROUP BY c.relname
"""
_REFERENCES = """
SELECT c.conrelid::regclass::text AS child, c.confrelid::regclass::text AS parent
  FROM pg_constraint c
 WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace AND c.conrelid <> c.confrelid
"""


def person_hash(user_id: str) -> str:
    """The ledger's key for a person: a hash of the id, so the ledger never holds the id itself."""
    return hashlib.sha256(f"soulprint-erased\x1f{user_id}".encode("utf-8")).hexdigest()


async def person_tables(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """The tables with a user_id or job_id column, each after every table whose foreign keys point at it."""
    tables = {r["name"]: r for r in await conn.fetch(_PERSON_TABLES)}
    graph: dict[str, set[str]] = {name: set() for name in tables}
    for ref in await conn.fetch(_REFERENCES):
        if ref["child"] in tables and ref["parent"] in tables:
            graph[ref["parent"]].add(ref["child"])  # the child's rows go first
    return [tables[name] for name in graphlib.TopologicalSorter(graph).static_order()]


class Erasures:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def is_erased(self, user_id: str, *, requested_at: float | None = None) -> bool:
        """Whether the person was erased (after ``requested_at``, when given: a later request is
        the person coming back)."""
        erased_at = await self.pool.fetchval(
            "SELECT extract(epoch FROM erased_at) FROM erased_people WHERE person_hash = $1", person_hash(user_id))
        return erased_at is not None and (requested_at is None or requested_at < float(erased_at))

    async def drops(self, event) -> bool:
        """Whether a stage must ignore ``event`` because its person or its job was erased (module doc).
        One indexed lookup."""
        user_id = getattr(event, "user_id", None) or ""
        job_id = getattr(event, "job_id", None)
        if job_id and not isinstance(event, ImportRequested):
            return not await self.pool.fetchval("SELECT EXISTS (SELECT 1 FROM import_jobs WHERE job_id = $1)", job_id)
        moment = getattr(event, "requested_at", None) or getattr(event, "created_at", None)
        return bool(user_id) and await self.is_erased(user_id, requested_at=moment or 0.0)

    async def delete_person(self, user_id: str) -> tuple[datetime, dict[str, int]]:
        """Delete every row about the person and record the erasure and its notice, in one transaction:
        (the erasure's time, rows deleted per table)."""
        if not user_id or not user_id.strip():
            raise ValueError("name the person to erase")
        async with self.pool.acquire() as conn, conn.transaction():
            # The person's transitions (services/db/jobs.py) hold this lock: none runs half-way through.
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", PERSON_LOCK, user_id)
            jobs = [r["job_id"] for r in await conn.fetch(
                "SELECT job_id FROM import_jobs WHERE user_id = $1 FOR UPDATE", user_id)]
            erased_at = await conn.fetchval(
                "INSERT INTO erased_people (person_hash) VALUES ($1)"
                " ON CONFLICT (person_hash) DO UPDATE SET erased_at = now() RETURNING erased_at",
                person_hash(user_id))
            counts = {"llm_cache": await _cache_entries(conn, user_id)}
            for table in await person_tables(conn):
                name = table["name"]
                if name == "llm_usage":
                    counts[name] = await _usage(conn, jobs)
                    continue
                if name == "search_indexes":
                    await _drop_indexes(conn, jobs)
                counts[name] = await _sweep(conn, table, user_id, jobs)
            await record_notice(conn, type="person.deleted", user_id=user_id, job_id=None,
                                data={"erased_at": erased_at.isoformat(), "tables": counts})
        return erased_at, counts


async def _sweep(conn: asyncpg.Connection, table: asyncpg.Record, user_id: str, jobs: list[str]) -> int:
    """The person's rows of one table: by their user_id, by the person's jobs, or both."""
    person, args = [], []
    if table["by_user"]:
        args.append(user_id)
        person.append(f"user_id = ${len(args)}")
    if table["by_job"]:
        args.append(jobs)
        person.append(f"job_id = ANY(${len(args)}::text[])")
    kept = f" AND NOT ({KEPT[table['name']]})" if table["name"] in KEPT else ""
    status = await conn.execute(f'DELETE FROM "{table["name"]}" WHERE ({" OR ".join(person)}){kept}', *args)
    return int(status.rsplit(" ", 1)[-1])


async def _cache_entries(conn: asyncpg.Connection, user_id: str) -> int:
    """The cached LLM answers made from the person's requests (their links go with the sweep)."""
    status = await conn.execute(
        "DELETE FROM llm_cache WHERE key IN (SELECT key FROM llm_cache_people WHERE user_id = $1)", user_id)
    return int(status.rsplit(" ", 1)[-1])


async def _usage(conn: asyncpg.Connection, jobs: list[str]) -> int:
    """The jobs' usage rows, their numbers added to the anonymous (erased) rows of the same stage and model."""
    return await conn.fetchval(
        """
        WITH gone AS (DELETE FROM llm_usage WHERE job_id = ANY($1::text[]) RETURNING *),
        kept AS (
            INSERT INTO llm_usage AS u (job_id, stage, provider, model, requests, cache_hits, throttled,
                                        input_tokens, output_tokens, cache_creation_input_tokens,
                                        cache_read_input_tokens, cost_usd)
            SELECT $2, stage, provider, model, sum(requests), sum(cache_hits), sum(throttled), sum(input_tokens),
                   sum(output_tokens), sum(cache_creation_input_tokens), sum(cache_read_input_tokens), sum(cost_usd)
              FROM gone GROUP BY stage, provider, model
            ON CONFLICT (job_id, stage, provider, model) DO UPDATE SET
                requests = u.requests + EXCLUDED.requests, cache_hits = u.cache_hits + EXCLUDED.cache_hits,
                throttled = u.throttled + EXCLUDED.throttled, input_tokens = u.input_tokens + EXCLUDED.input_tokens,
                output_tokens = u.output_tokens + EXCLUDED.output_tokens,
                cache_creation_input_tokens = u.cache_creation_input_tokens + EXCLUDED.cache_creation_input_tokens,
                cache_read_input_tokens = u.cache_read_input_tokens + EXCLUDED.cache_read_input_tokens,
                cost_usd = u.cost_usd + EXCLUDED.cost_usd, updated_at = now()
        )
        SELECT count(*) FROM gone
        """,
        jobs, ERASED_USAGE_JOB,
    )


async def _drop_indexes(conn: asyncpg.Connection, jobs: list[str]) -> None:
    """The HNSW indexes of the person's imports hold their vectors: dropped with their rows."""
    for name in await conn.fetch("SELECT index_name FROM search_indexes WHERE job_id = ANY($1::text[])", jobs):
        await conn.execute(f'DROP INDEX IF EXISTS "{name["index_name"]}"')
