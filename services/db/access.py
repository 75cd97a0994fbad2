"""Person tokens (table api_tokens) and reader sessions: the database half of isolation.

A token is ``sp_<token_id>_<secret>``; only its SHA-256 is stored, so the
table alone lets nobody act for anyone. A reader session is one read-only
transaction as the role ``soulprint_reader`` with the person set in
``soulprint.user_id``: row-level security (migrations/0010_access.sql) then
shows that person's rows and nothing else, whatever the SQL inside asks for.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from contextlib import asynccontextmanager
from typing import AsyncContextManager, AsyncIterator, Callable, Mapping

import asyncpg

from soulprint.models.access import Principal
from soulprint.services.db.pool import set_local

TOKEN_PREFIX = "sp_"
READER_ROLE = "soulprint_reader"


def token_hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


class Tokens:
    def __init__(self, pool: asyncpg.Pool, reads: asyncpg.Pool | None = None) -> None:
        self.pool = pool
        self.reads = reads or pool  # resolve's one statement, on every request

    async def create(self, user_id: str, label: str | None = None) -> tuple[str, str]:
        """A new token bound to ``user_id``: (token_id, plaintext). The plaintext is not kept."""
        if not user_id or not user_id.strip():
            raise ValueError("a token needs a user")
        token_id = secrets.token_hex(8)
        plaintext = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        await self.pool.execute(
            "INSERT INTO api_tokens (token_id, token_hash, user_id, label) VALUES ($1, $2, $3, $4)",
            token_id, token_hash(plaintext), user_id, label,
        )
        return token_id, plaintext

    async def revoke(self, token_or_id: str) -> bool:
        """Revoke a token named by itself or by its id; False if there is no such token.
        Revoking a revoked token keeps its first revocation time."""
        row = await self.pool.fetchrow(
            "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())"
            " WHERE token_hash = $1 OR token_id = $2 RETURNING token_id",
            token_hash(token_or_id), token_or_id,
        )
        return row is not None

    async def resolve(self, plaintext: str) -> Principal | None:
        """The principal of a live person token; None when unknown or revoked."""
        if not plaintext.startswith(TOKEN_PREFIX):
            return None
        row = await self.reads.fetchrow(
            "SELECT token_id, user_id FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
            token_hash(plaintext),
        )
        return Principal(user_id=row["user_id"], token_id=row["token_id"]) if row else None


class Reader:
    """Read-only transactions as the reader role, one person at a time."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def spare(self, user_id: str) -> Callable[..., AsyncContextManager[asyncpg.Connection]] | None:
        """A second session of ``user_id`` for work beside the first (the search's two retrievers),
        or None when the pool has neither an idle connection nor room for one more: under load a
        search then runs its parts one after the other on one connection instead of waiting for a
        second."""
        if self.pool.get_idle_size() == 0 and self.pool.get_size() >= self.pool.get_max_size():
            return None
        return lambda settings=None: self.session(user_id, settings)

    @asynccontextmanager
    async def session(self, user_id: str,
                      settings: Mapping[str, str] | None = None) -> AsyncIterator[asyncpg.Connection]:
        """``settings``: more settings for this transaction alone (the vector retriever's).

        The transaction begins with its settings in one round trip (a simple query of two
        statements, so the values are quoted literals rather than parameters) and ends with a
        COMMIT, or a ROLLBACK if the body raised."""
        if not user_id:
            raise ValueError("a reader session needs a person")
        # Every setting is LOCAL: it ends with the transaction, before the connection goes back
        # to the pool. Plans are made for each query's own values: one person has 900 chunks,
        # another 100,000, and a cached generic plan (asyncpg prepares every statement) picked for
        # neither read all 100,000 to answer a full-text search (0.6 s vs 20 ms).
        local = {"role": READER_ROLE, "soulprint.user_id": user_id, "plan_cache_mode": "force_custom_plan",
                 **(settings or {})}
        begin = "BEGIN READ ONLY; " + set_local(local)
        async with self.pool.acquire() as conn:
            await conn.execute(begin)
            try:
                yield conn
            except BaseException:
                # Best effort: a query cut short by cancellation may leave the connection busy;
                # asyncpg then rolls back when the connection goes back to the pool.
                with contextlib.suppress(Exception):
                    await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

