"""The database layer, by aggregate. All SQL of the project lives in this package.

    db = await Database.connect(url)
    await db.jobs.claim_ingest(job_id, worker, stale_after_s)   # the job state machine
    await db.chunks.to_extract(job_id, user_id, conversations)  # conversations and chunks
    await db.facts.load(job_id)                                 # facts, consolidated facts
    await db.embeddings.to_embed(job_id, chunk_ids, space_id)   # chunk vectors
    await db.soulprints.get(user_id)                            # soulprints and MEMORY
    await db.tokens.resolve(plaintext)                          # person tokens
    async with db.reader.session(user_id) as conn: ...          # reads under row-level security
    await db.view.get(conn, user_id)                            # the query service's soulprint view
    async with db.notices.unpublished(100) as batch: ...        # the notices outbox (record_notice: in a transaction)

pool.py connects and migrates (migrations/ is append-only); llm.py holds the
LLM layer's cache, usage and batch tables.
"""

from __future__ import annotations

import asyncpg

from soulprint.services.db.access import Reader, Tokens
from soulprint.services.db.chunks import Chunks, ChunkWrite
from soulprint.services.db.deadletters import DeadLetterRows
from soulprint.services.db.embeddings import Embeddings
from soulprint.services.db.erasure import Erasures
from soulprint.services.db.facts import Facts
from soulprint.services.db.jobs import Jobs, Moved
from soulprint.services.db.notices import Notices
from soulprint.services.db.llm import PostgresBatchStore, PostgresCache, PostgresUsageSink, usage_for_job
from soulprint.services.db.search import Search
from soulprint.services.db.query_view import QueryView
from soulprint.services.db.pool import RECONCILER_LOCK, DatabaseError, create_pool, migrate, try_advisory_lock
from soulprint.services.db.resumable import Resumable
from soulprint.services.db.soulprints import Soulprints
from soulprint.services.db.webhooks import Webhooks
from soulprint.services.db.uploads import Uploads


class Database:
    """One object per aggregate over one pool."""

    def __init__(self, pool: asyncpg.Pool, reads: asyncpg.Pool | None = None) -> None:
        self.pool = pool
        # The query service's reads, on connections with no session state to reset between
        # uses (pool.ReadConnection): reader sessions and token lookups, 1-2 round trips fewer
        # a search (bench/README.md, "Search at scale").
        self.reads = reads or pool
        self.jobs = Jobs(pool)
        self.chunks = Chunks(pool)
        self.embeddings = Embeddings(pool)
        self.search = Search(pool)
        self.facts = Facts(pool)
        self.soulprints = Soulprints(pool)
        self.tokens = Tokens(pool, self.reads)
        self.reader = Reader(self.reads)
        self.view = QueryView(pool)
        self.erasure = Erasures(pool)  # deleting a person, and the ledger every stage checks
        self.uploads = Uploads(pool)  # uploaded exports' jobs: the duplicate check, status with revision
        self.resumable = Resumable(pool)  # resumable (tus) uploads
        self.notices = Notices(pool)
        self.webhooks = Webhooks(pool)
        self.dead_letters = DeadLetterRows(pool)

    @classmethod
    async def connect(cls, url: str, *, min_size: int = 1, max_size: int = 10) -> "Database":
        pool = await create_pool(url, min_size=min_size, max_size=max_size)
        try:
            await migrate(pool)
            reads = await create_pool(url, min_size=0, max_size=max_size, reads=True)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, reads)

    async def close(self) -> None:
        if self.reads is not self.pool:
            await self.reads.close()
        await self.pool.close()

    def reconciler_lock(self):
        """``async with db.reconciler_lock() as mine:`` one reconciler at a time across workers."""
        return try_advisory_lock(self.pool, RECONCILER_LOCK)

    def llm_cache(self) -> PostgresCache:
        return PostgresCache(self.pool)

    def llm_usage(self) -> PostgresUsageSink:
        return PostgresUsageSink(self.pool)

    def llm_batches(self) -> PostgresBatchStore:
        return PostgresBatchStore(self.pool)

    async def usage_for_job(self, job_id: str) -> dict:
        return await usage_for_job(self.pool, job_id)


__all__ = ["Database", "DatabaseError", "ChunkWrite", "Moved", "PostgresBatchStore", "PostgresCache",
           "PostgresUsageSink", "usage_for_job"]
