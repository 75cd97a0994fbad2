"""Driving the pipeline from tests and benchmarks: publish an import, wait for it to end."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path

from soulprint.agents import chunker as chunker_agent
from soulprint.models.domain import Conversation, Message
from soulprint.models.events import ConversationImported, ImportRequested
from soulprint.topics import conversation_key
from soulprint.reporting import job_finished
from soulprint.services.db.pool import RECONCILER_LOCK
from soulprint.services.kafka import ImportPublisher
from support.waiting import wait_until


@contextlib.asynccontextmanager
async def reconciler_paused(db):
    """No worker's reconciler pass runs inside the block: its lock is held (a pass under way is waited
    out), for tests that age a row the reconciler would act on."""
    async with db.pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", RECONCILER_LOCK)
        try:
            yield
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", RECONCILER_LOCK)


@contextlib.asynccontextmanager
async def running(settings):
    """An in-process worker on ``settings`` (every lane's consumer group joined), stopped and its pool
    closed after the block."""
    from soulprint.runtime import build_runtime

    rt = await build_runtime(settings)
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()
        await rt.db.close()


async def publish_import(settings, user_id: str, source: Path, job_id: str | None = None) -> str:
    job_id = job_id or str(uuid.uuid4())
    async with ImportPublisher(settings) as publisher:
        await publisher.publish(ImportRequested(job_id=job_id, user_id=user_id, source_uri=Path(source).as_uri(),
                                                requested_at=time.time()))
    return job_id


async def import_and_wait(rt, user_id: str, source: Path, *, job_id: str | None = None,
                          limit_s: float = 180.0):
    job_id = await publish_import(rt.settings, user_id, source, job_id)
    return await wait_until(lambda: rt.db.jobs.get(job_id), job_finished, limit_s=limit_s,
                            what=f"import {job_id} to finish")


@contextlib.asynccontextmanager
async def chunker_held(rt, monkeypatch, user_id: str):
    """The chunker stuck with a full queue behind it, for the life of the block.

    More conversations than the chunker takes at once and buffers behind that
    are sent for a job that does not exist (written as nothing once released);
    the block starts once the chunker holds its first batch. Yields the gate:
    still unset at the end of the block means the chunker never moved.
    """
    gate, held = asyncio.Event(), asyncio.Event()
    real_chunk_batch = chunker_agent.chunk_batch

    async def stuck(rt_, batch):
        held.set()
        await gate.wait()
        await real_chunk_batch(rt_, batch)

    monkeypatch.setattr(chunker_agent, "chunk_batch", stuck)
    try:
        ghost_job = str(uuid.uuid4())
        for seq in range(3 * (rt.settings.batch_size + rt.settings.stream_buffer)):
            conv = Conversation(id=f"ghost-{seq}", title=None, created_at=None, updated_at=None, source="chatgpt",
                                messages=[Message(id="m", role="user", text="hello", time=None)])
            await rt.topics.conversations.send(key=conversation_key(user_id, conv.id),
                                               value=ConversationImported.from_domain(ghost_job, user_id, seq, conv))
        await asyncio.wait_for(held.wait(), timeout=60)  # a guard against a hang, not a timing
        yield gate
    finally:
        gate.set()
