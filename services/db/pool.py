"""Connecting to Postgres: the pool, the migrations, advisory locks.

Migrations are the files in services/db/migrations/, applied in name order,
each once, recorded in ``schema_migrations``. They are append-only: a file
that has been applied anywhere is never edited; a change is a new file.
"""

from __future__ import annotations

import json
import re
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from importlib import resources
from typing import AsyncIterator, Mapping

import asyncpg

MIGRATIONS_PACKAGE = "soulprint.services.db"
MIGRATION_LOCK = 0x5017_0001  # advisory lock ids: one migrator / one reconciler at a time
RECONCILER_LOCK = 0x5017_0002
MIN_PGVECTOR = (0, 8, 4)


class DatabaseError(RuntimeError):
    pass


def ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=timezone.utc)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def quote_literal(text: str) -> str:
    """``text`` as an SQL string literal, for the few statements that cannot take parameters
    (a partial index's predicate, a simple query of several statements). standard_conforming_strings
    is on, so only quotes are doubled; a NUL cannot be in a Postgres string at all."""
    if "\x00" in text:
        raise ValueError("an SQL string cannot hold a NUL character")
    return "'" + text.replace("'", "''") + "'"


def set_local(settings: Mapping[str, object]) -> str:
    """One SELECT setting every one of ``settings`` to the end of the current transaction."""
    return "SELECT " + ", ".join(f"set_config({quote_literal(name)}, {quote_literal(str(value))}, true)"
                                 for name, value in settings.items())


class ReadConnection(asyncpg.Connection):
    """A connection of the read pool: nothing but reader sessions (one transaction each, every
    setting LOCAL to it) and single statements run on it, so it leaves nothing to reset when it
    goes back to the pool, and the reset round trip asyncpg makes on every release (unlock
    advisory locks, close cursors, unlisten, RESET ALL) is skipped. An open transaction is still
    rolled back by asyncpg."""

    def get_reset_query(self) -> str:
        return ""


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10, reads: bool = False) -> asyncpg.Pool:
    """``reads``: a pool of ReadConnection (Database.reads)."""
    try:
        if not reads:  # the read pool is made second, beside a pool that made sure of it
            await _ensure_database(url)
        return await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, init=_init_connection,
                                         connection_class=ReadConnection if reads else asyncpg.Connection)
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseError(f"cannot connect to Postgres: {exc}") from None


async def ping(pool: asyncpg.Pool, timeout_s: float = 5.0) -> bool:
    """One round trip to the server (GET /health): False if it does not answer in time."""
    try:
        async with pool.acquire(timeout=timeout_s) as conn:
            await conn.fetchval("SELECT 1", timeout=timeout_s)
        return True
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return False


async def migrate(pool: asyncpg.Pool) -> list[str]:
    """Apply the migrations not applied yet, in order; returns their names."""
    files = sorted(
        (f for f in resources.files(MIGRATIONS_PACKAGE).joinpath("migrations").iterdir() if f.name.endswith(".sql")),
        key=lambda f: f.name,
    )
    applied_now: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
            for f in files:
                if f.name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(f.read_text())
                    await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", f.name)
                applied_now.append(f.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    if version is None or _version_tuple(version) < MIN_PGVECTOR:
        raise DatabaseError(
            f"pgvector {version or 'missing'} is too old: 0.8.4 or later is required (HNSW vacuum fixes)"
        )
    return applied_now


@asynccontextmanager
async def try_advisory_lock(pool: asyncpg.Pool, key: int) -> AsyncIterator[bool]:
    """Hold the session advisory lock ``key`` for the block if nobody else does; yields whether it was taken."""
    async with pool.acquire() as conn:
        taken = await conn.fetchval("SELECT pg_try_advisory_lock($1)", key)
        try:
            yield taken
        finally:
            if taken:
                await conn.execute("SELECT pg_advisory_unlock($1)", key)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


async def _ensure_database(url: str) -> None:
    """Create the target database if it does not exist (fresh embedded cluster)."""
    try:
        conn = await asyncpg.connect(url)
    except asyncpg.InvalidCatalogNameError:
        base, _, name = url.rpartition("/")
        name = name.split("?")[0]
        admin = await asyncpg.connect(f"{base}/postgres")
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:
            pass
        finally:
            await admin.close()
    else:
        await conn.close()
