"""Chunker: conversations → chunks.

Take a batch of conversation events from the stream, cut each conversation
into micro, medium and macro chunks (pure domain code), write the batch to
Postgres in one transaction, emit one ConversationChunked per conversation,
and close any job whose every conversation is now chunked.
"""

from __future__ import annotations

import asyncio
import logging

from soulprint.agents.containment import contained
from soulprint.agents.flow import complete_if_chunked, emit
from soulprint.domain.chunking import chunk_conversation
from soulprint.models.events import ChunkRef, ConversationChunked, ConversationImported, IngestCompleted
from soulprint.models.jobs import JobStatus
from soulprint.services.db import ChunkWrite

log = logging.getLogger("soulprint.agents.chunker")


def register(rt) -> None:
    settings = rt.settings
    app, conversations, _ = rt.source(JobStatus.CHUNKING)

    @app.agent(conversations, name="soulprint.chunker")
    async def chunker(stream):
        async for batch in stream.take(settings.batch_size, within=settings.batch_window_s):
            await rt.parsing.wait_idle()  # the parse (and so quick_ready) goes first here
            await chunk_batch(rt, batch)


async def chunk_batch(rt, batch: list) -> None:
    conversations = [e for e in batch if isinstance(e, ConversationImported)]
    completed = [e for e in batch if isinstance(e, IngestCompleted)]
    try:
        written = await write_batch(rt, conversations)
    except Exception:  # noqa: BLE001 - find the poison message one by one
        written = []
        for event in conversations:
            async def one(event=event):
                written.extend(await write_batch(rt, [event]))
            await contained(rt, "chunker", event, one)

    await emit(rt, (
        ConversationChunked(
            job_id=w.job_id, user_id=w.user_id, conversation_id=w.conversation.id,
            chunks=[ChunkRef(chunk_id=k.id, tier=k.tier, token_count=k.token_count) for k in w.chunks],
        )
        for w in written
    ))
    for job_id in sorted({e.job_id for e in conversations} | {e.job_id for e in completed}):
        try:
            await complete_if_chunked(rt, job_id)
        except Exception:  # noqa: BLE001 - the reconciler notices a job that stops moving
            log.exception("completion check failed for job %s", job_id)


async def write_batch(rt, events: list[ConversationImported]) -> list[ChunkWrite]:
    # Chunking a batch is a second or so of pure CPU: in a thread, the event
    # loop keeps serving the latency-critical path (someone's quick pass)
    # between the interpreter's switches instead of after the whole batch.
    writes = await asyncio.to_thread(_chunk_all, events, rt.settings.chunking)
    return await rt.db.jobs.write_chunks(writes)


def _chunk_all(events: list[ConversationImported], config) -> list[ChunkWrite]:
    writes = []
    for event in events:
        conv = event.to_domain()
        chunks = chunk_conversation(event.user_id, conv, config)
        writes.append(ChunkWrite(job_id=event.job_id, user_id=event.user_id, conversation=conv, chunks=chunks))
    return writes
