"""What was still running when a person was erased writes nothing of theirs afterwards.

An LLM request may be waiting on the provider while its person is erased; its answer must not land
in the response cache (where no later erasure could find it), and a consolidation or MEMORY that
finishes after the erasure must not write rows for a job that no longer exists.
"""

from __future__ import annotations

import asyncio
import uuid

from soulprint.services.db.jobs import PERSON_LOCK
from soulprint.models.llm import Usage
from soulprint.services.db.erasure import ERASED_USAGE_JOB
from soulprint.services.db.llm import PostgresCache, PostgresUsageSink
from support.waiting import wait_until


async def a_job(db) -> tuple[str, str]:
    user, job_id = f"inflight-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    await db.jobs.create(job_id, user, "file:///export.zip")
    return user, job_id


async def cached(db, key: str) -> tuple[bool, list[str]]:
    entry = await db.pool.fetchval("SELECT EXISTS (SELECT 1 FROM llm_cache WHERE key = $1)", key)
    owners = [r["user_id"] for r in await db.pool.fetch("SELECT user_id FROM llm_cache_people WHERE key = $1", key)]
    return entry, owners


async def advisory_waiters(db, user: str) -> int:
    return await db.pool.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = $1"
        " AND objid = (hashtext($2)::bigint & 4294967295)::oid", PERSON_LOCK, user)


async def test_an_answer_for_a_live_job_is_cached_and_linked_to_its_person(db):
    user, job_id = await a_job(db)
    cache, key = PostgresCache(db.pool), f"k-{uuid.uuid4().hex}"
    await cache.put(key, "anthropic", "m", {"facts": []}, job_id=job_id)
    assert await cached(db, key) == (True, [user])
    assert await cache.get(key, job_id=job_id) == {"facts": []}


async def test_an_answer_for_a_job_that_is_gone_is_not_cached(db):
    cache, key = PostgresCache(db.pool), f"k-{uuid.uuid4().hex}"
    await cache.put(key, "anthropic", "m", {"facts": ["about them"]}, job_id=f"erased-{uuid.uuid4().hex}")
    assert await cached(db, key) == (False, [])


async def test_a_cache_write_waits_for_the_erasure_and_then_keeps_nothing(db):
    user, job_id = await a_job(db)
    cache, key = PostgresCache(db.pool), f"k-{uuid.uuid4().hex}"
    async with db.pool.acquire() as erasing, erasing.transaction():
        # What services/db/erasure.py does first: the person's lock, for the whole transaction.
        await erasing.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", PERSON_LOCK, user)
        put = asyncio.create_task(cache.put(key, "anthropic", "m", {"facts": ["about them"]}, job_id=job_id))
        await wait_until(lambda: advisory_waiters(db, user), lambda n: n >= 1, what="the put to wait on the lock")
        await erasing.execute("DELETE FROM import_jobs WHERE job_id = $1", job_id)
    await put
    assert await cached(db, key) == (False, [])


async def test_a_cache_hit_during_an_erasure_links_no_one(db):
    user, job_id = await a_job(db)
    cache, key = PostgresCache(db.pool), f"k-{uuid.uuid4().hex}"
    await cache.put(key, "anthropic", "m", {"answer": "shared"})  # nobody's entry: kept, unlinked
    await db.pool.execute("DELETE FROM import_jobs WHERE job_id = $1", job_id)  # the person erased
    assert await cache.get(key, job_id=job_id) == {"answer": "shared"}
    assert await cache.get(key, user_id=user) == {"answer": "shared"}
    assert await cached(db, key) == (True, [])


async def test_consolidation_and_memory_finishing_after_the_erasure_write_nothing(db):
    user, job_id = await a_job(db)
    await db.pool.execute("DELETE FROM import_jobs WHERE job_id = $1", job_id)  # erased while they ran
    moved = await db.jobs.store_consolidated(job_id, user, [])
    assert moved.emit == []
    moved = await db.jobs.store_memory(job_id, user, "# MEMORY\n- likes tea", offline=True)
    assert moved.emit == []
    assert await db.pool.fetchval("SELECT count(*) FROM memories WHERE job_id = $1", job_id) == 0


async def test_usage_of_a_request_that_outlived_its_job_is_counted_without_the_job(db):
    user, job_id = await a_job(db)
    sink, model = PostgresUsageSink(db.pool), f"model-{uuid.uuid4().hex[:8]}"
    await sink.record(job_id, "facts", "anthropic", model, Usage(requests=1, input_tokens=100))
    await db.pool.execute("DELETE FROM import_jobs WHERE job_id = $1", job_id)  # erased while another ran
    await sink.record(job_id, "facts", "anthropic", model, Usage(requests=1, input_tokens=40))
    rows = await db.pool.fetch("SELECT job_id, requests, input_tokens FROM llm_usage WHERE model = $1"
                               " ORDER BY job_id", model)
    assert [tuple(r) for r in rows] == sorted([(job_id, 1, 100), (ERASED_USAGE_JOB, 1, 40)])


async def test_an_extraction_failure_after_the_erasure_writes_nothing(db):
    user, job_id = await a_job(db)
    chunk = str(uuid.uuid4())
    await db.facts.extraction_failed(job_id, [chunk], "overloaded")
    assert await db.pool.fetchval("SELECT count(*) FROM fact_extractions WHERE job_id = $1", job_id) == 1
    await db.pool.execute("DELETE FROM fact_extractions WHERE job_id = $1", job_id)
    await db.pool.execute("DELETE FROM import_jobs WHERE job_id = $1", job_id)  # erased while it ran
    await db.facts.extraction_failed(job_id, [chunk], "overloaded")
    assert await db.pool.fetchval("SELECT count(*) FROM fact_extractions WHERE job_id = $1", job_id) == 0


async def test_a_dead_letter_of_a_job_erased_meanwhile_is_not_recorded(db):
    from soulprint.services.db.deadletters import DeadLetterRows

    rows = DeadLetterRows(db.pool)
    letter = dict(stage="facts", topic="t.chunks", partition=0, offset=7, error_class="ValueError",
                  error_message="bad chunk", attempts=1, blocks_job=True)
    never = await rows.record(letter_id=f"l-{uuid.uuid4().hex}", user_id="nobody-erased", job_id="no-such-job",
                              **letter)
    assert never  # a job that never was, of a person never erased: recorded as before
    user, job_id = await a_job(db)
    await db.erasure.delete_person(user)
    gone = await rows.record(letter_id=f"l-{uuid.uuid4().hex}", user_id=user, job_id=job_id, **letter)
    assert not gone
    assert await db.pool.fetchval("SELECT count(*) FROM dead_letters WHERE job_id = $1", job_id) == 0
