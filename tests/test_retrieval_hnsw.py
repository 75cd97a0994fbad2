"""The HNSW path: one person's top-k equals exact search, however many other people share the table.

Rows are written straight to Postgres (a person with enough vectors for an
index among many people whose vectors sit right next to theirs, the hard
case for a filtered index scan), and the expected order is computed here in
Python from the same vectors, independently of Postgres.
"""

from __future__ import annotations

import contextlib
import math
import random
import uuid
from datetime import timedelta

import orjson
import pytest

from soulprint.models.embedding import EmbeddingSpace
from soulprint.services.db.search import Filters
from support.chunks import T0, add_person

DIM = 16


def _unit(v: list[float]) -> list[float]:
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


async def _person(db, user: str, space: EmbeddingSpace, vectors: list[list[float]]) -> tuple[str, list[str]]:
    job, ids = await add_person(db, user, [f"chunk {i}" for i in range(len(vectors))], tokens=3,
                                job={"embedding_status": "complete", "embedding_model": space.space_id,
                                     "embedded": len(vectors), "embedding_total": len(vectors)})
    await db.pool.execute(
        "INSERT INTO chunk_embeddings (job_id, chunk_id, model, dimensions, embedding)"
        " SELECT $1, x.c, $2, $3, x.v::vector FROM unnest($4::uuid[], $5::text[]) AS x(c, v)",
        job, space.space_id, DIM, ids, [orjson.dumps(v).decode() for v in vectors])
    return job, ids


def _exact(query: list[float], ids: list[str], vectors: list[list[float]], keep, n: int) -> list[str]:
    scored = sorted((1 - sum(a * b for a, b in zip(query, v)), c) for i, (c, v) in enumerate(zip(ids, vectors))
                    if keep(i))
    return [c for _, c in scored[:n]]


async def test_the_hnsw_path_returns_exactly_the_exact_top_k_among_many_people(db):
    tag = uuid.uuid4().hex[:8]
    space = EmbeddingSpace("hash", f"hnsw-test-{tag}", DIM)
    rng = random.Random(11)
    mine = [_unit([rng.gauss(0, 1) for _ in range(DIM)]) for _ in range(600)]
    me = f"hnsw-me-{tag}"
    job, ids = await _person(db, me, space, mine)
    for p in range(40):  # 40 people x 150 vectors, each a slightly moved copy of one of mine
        others = [_unit([x + rng.gauss(0, 0.05) for x in rng.choice(mine)]) for _ in range(150)]
        await _person(db, f"hnsw-other-{tag}-{p}", space, others)

    changes = await db.search.maintain_indexes(space, min_vectors=500)
    assert changes == {"built": [job], "dropped": []}  # only the person with enough vectors gets one
    assert await db.search.maintain_indexes(space, min_vectors=500) == {"built": [], "dropped": []}  # idempotent

    depth = 50  # the vector side's candidates for k = 10
    since = T0 + timedelta(hours=300)
    for _ in range(20):
        query = _unit([rng.gauss(0, 1) for _ in range(DIM)])
        for filters, keep in ((Filters(), lambda i: True),
                              (Filters(since=since), lambda i: i >= 300),
                              (Filters(tiers=["micro"], until=since), lambda i: i < 300)):
            async with db.pool.acquire() as conn:
                result, rankings = await db.search.search(conn, me, "", query, space, 10, filters)
            assert result.vector_path == "hnsw"
            assert [c.chunk_id for c in rankings["vector"]] == _exact(query, ids, mine, keep, depth)  # recall 1.0
    async with db.reader.session(me) as conn:  # the same under row-level security, as the reader
        result, rankings = await db.search.search(conn, me, "", query, space, 10, filters)
        forced, exact_rankings = await db.search.search(conn, me, "", query, space, 10, filters, exact=True)
    assert result.vector_path == "hnsw" and [c.chunk_id for c in rankings["vector"]] == _exact(query, ids, mine, keep, depth)
    assert forced.vector_path == "exact" and exact_rankings["vector"] == rankings["vector"]
    # the vector side on a second session beside full text (what the query service does when the
    # pool has a connection to spare): the same candidates, the same path, the same result
    async with db.reader.session(me) as conn:
        spare = db.reader.spare(me)
        assert spare is not None
        beside, beside_rankings = await db.search.search(conn, me, "", query, space, 10, filters, spare=spare)
    assert beside.vector_path == "hnsw" and beside_rankings == rankings and beside.to_json() == result.to_json()
    async with db.pool.acquire() as conn:  # beside, the scope too narrow for the index: exact answers there as well
        beside, beside_rankings = await db.search.search(conn, me, "", query, space, 10,
                                                         Filters(since=T0 + timedelta(hours=590)),
                                                         spare=db.reader.spare(me))
    assert beside.vector_path == "exact after hnsw"
    assert [c.chunk_id for c in beside_rankings["vector"]] == _exact(query, ids, mine, lambda i: i >= 590, depth)

    # the current import seen to change between the two sessions' reads: the search runs again on
    # the first session alone, so both retrievers search one import (here the vector session sees,
    # in its own uncommitted transaction, another import as current)
    @contextlib.asynccontextmanager
    async def moved(settings):
        async with db.pool.acquire() as other:
            change = other.transaction()
            await change.start()
            await other.execute("INSERT INTO import_jobs (job_id, user_id, source_uri, status) VALUES"
                                " ('job-elsewhere', $1, 'x', 'complete')", me)
            await other.execute("UPDATE people SET current_job_id = 'job-elsewhere' WHERE user_id = $1", me)
            try:
                yield other
            finally:
                await change.rollback()

    async with db.reader.session(me) as conn:
        again, again_rankings = await db.search.search(conn, me, "", query, space, 10, filters, spare=moved)
    assert again.job_id == job and again.vector_path == "hnsw" and again_rankings == rankings
    assert await db.pool.fetchval("SELECT current_job_id FROM people WHERE user_id = $1", me) == job

    # a scope narrower than the candidates asked for: the index scan comes up short, exact answers
    narrow = Filters(since=T0 + timedelta(hours=590))
    async with db.pool.acquire() as conn:
        result, rankings = await db.search.search(conn, me, "", query, space, 10, narrow)
    assert result.vector_path == "exact after hnsw"
    assert [c.chunk_id for c in rankings["vector"]] == _exact(query, ids, mine, lambda i: i >= 590, depth)

    # the person's import is replaced: its index goes
    await db.pool.execute("UPDATE people SET current_job_id = 'job-gone' WHERE user_id = $1", me)
    assert await db.search.maintain_indexes(space, min_vectors=500) == {"built": [], "dropped": [job]}
    assert await db.pool.fetchval("SELECT count(*) FROM search_indexes WHERE job_id = $1", job) == 0


async def test_a_spare_session_only_when_the_pool_has_a_connection_to_spare(stack_settings):
    """Reader.spare: a second session while the pool can give one at once, None when every
    connection is taken, so that a search under load never waits for a second connection."""
    import asyncpg

    from soulprint.services.db.access import Reader

    pool = await asyncpg.create_pool(stack_settings.database_url, min_size=1, max_size=2)
    try:
        reader = Reader(pool)
        async with reader.session("spare-me") as first:
            spare = reader.spare("spare-me")
            assert spare is not None  # room for one more
            async with spare({"hnsw.ef_search": "123"}) as second:
                assert await second.fetchval("SELECT current_setting('hnsw.ef_search')") == "123"
                assert await second.fetchval("SELECT current_setting('soulprint.user_id')") == "spare-me"
                assert reader.spare("spare-me") is None  # both connections taken
            assert await first.fetchval("SELECT current_user") == "soulprint_reader"
        async with pool.acquire() as conn:  # the settings were the transaction's alone
            assert await conn.fetchval("SELECT current_setting('soulprint.user_id', true)") in (None, "")
        # the person's id is a quoted literal in the session's first statement: quotes stay text
        tricky = "o'brien'); SELECT set_config('role', 'postgres', true); --"
        async with reader.session(tricky) as conn:
            assert await conn.fetchval("SELECT current_setting('soulprint.user_id')") == tricky
            assert await conn.fetchval("SELECT current_user") == "soulprint_reader"
        with pytest.raises(ValueError):
            async with reader.session("nul\x00byte"):
                pass
        with pytest.raises(RuntimeError):  # a failed body rolls back and the connection is usable again
            async with reader.session("spare-me") as conn:
                raise RuntimeError("boom")
        async with reader.session("spare-me") as conn:
            assert await conn.fetchval("SELECT current_setting('soulprint.user_id')") == "spare-me"
    finally:
        await pool.close()
