"""Which writers a chunker batch holds up while it writes: the job's cleanup, and nothing else.

A chunker transaction for a large batch runs for seconds. The facts agent
writes (and counts) extraction progress for the same job all the while; it
must not queue behind the batch. A failing job's cleanup must: it deletes the
job's chunks, so a batch that commits after it would leave rows behind.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from soulprint.domain.chunking import chunk_conversation
from soulprint.models.domain import Conversation, Message
from soulprint.services.db import ChunkWrite
from support.waiting import wait_until


def conversation(conv_id: str) -> Conversation:
    msgs = [Message(id=f"m{i}", role="user" if i % 2 == 0 else "assistant",
                    text=f"Message {i}: the harbor project moves to Dagster next spring.", time=1.7e9 + i)
            for i in range(6)]
    return Conversation(id=conv_id, title="Harbor", created_at=1.7e9, updated_at=1.7e9 + 6, source="chatgpt",
                        messages=msgs)


async def waiting_on_lock(db, query_part: str) -> int:
    return await db.pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%'"
        " AND datname = current_database()",
        query_part,
    )


async def test_a_chunker_batch_holds_up_the_job_cleanup_but_not_fact_writes(db, stack_settings, user_id):
    job_id = str(uuid.uuid4())
    await db.jobs.create(job_id, user_id, "file:///export.json")
    conv = conversation("c-locks")
    write = ChunkWrite(job_id=job_id, user_id=user_id, conversation=conv,
                       chunks=chunk_conversation(user_id, conv))

    # Another transaction inserting the same conversation for the job makes the batch wait
    # in the middle of its transaction, after it has taken its job row lock.
    blocker = await asyncpg.connect(stack_settings.database_url)
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute(
        "INSERT INTO conversations (user_id, conversation_id, job_id, source, message_count)"
        " VALUES ($1, $2, $3, 'chatgpt', 1)",
        user_id, conv.id, job_id,
    )
    chunking = asyncio.ensure_future(db.jobs.write_chunks([write]))
    cleanup = None
    facts = asyncio.ensure_future(asyncio.sleep(0))
    try:
        await wait_until(lambda: waiting_on_lock(db, "INSERT INTO conversations AS c"), lambda n: n >= 1,
                         limit_s=30, what="the chunker batch to wait inside its transaction")

        # Fact writes for the job go through while the batch is open.
        chunk_id = str(uuid.uuid4())
        facts = asyncio.ensure_future(db.jobs.record_facts(job_id, [chunk_id], []))

        async def facts_state():
            return facts.done(), await waiting_on_lock(db, "FROM import_jobs WHERE job_id = $1 FOR")

        done, _ = await wait_until(facts_state, lambda s: s[0] or s[1] >= 1, limit_s=30,
                                   what="the fact write to finish or wait")
        assert done, "the fact write waits for the chunker batch"
        assert (await facts).job.extraction_done == 1
        assert (await db.jobs.recount_extraction(job_id)).job.extraction_done == 1
        assert not chunking.done()

        # The cleanup of a failing job waits for the batch...
        cleanup = asyncio.ensure_future(db.jobs.fail(job_id, "bad_input", "test"))
        await wait_until(lambda: waiting_on_lock(db, "FOR UPDATE"), lambda n: n >= 1,
                         limit_s=30, what="the cleanup to wait for the chunker batch")
        assert not cleanup.done()
    finally:
        await tx.rollback()
        await blocker.close()
        if not facts.done():
            await asyncio.wait([facts])
    # ...which commits its rows, and the cleanup then removes them.
    written = await chunking
    assert [w.conversation.id for w in written] == [conv.id]
    assert await cleanup is True
    assert await db.pool.fetchval("SELECT count(*) FROM conversation_chunks WHERE job_id = $1", job_id) == 0
    assert await db.pool.fetchval("SELECT count(*) FROM conversations WHERE job_id = $1", job_id) == 0
    assert (await db.jobs.get(job_id)).status == "failed"
