"""Chunker: conversations → chunks.

Take a batch of conversation events from the stream, cut each conversation
into micro, medium and macro chunks (pure domain code), write the batch to
Postgres in one transaction, emit one ConversationChunked per conversation,
and close any job whose every conversation is now chunked.

A conversation sent by reference (too large for an event) is loaded from
Postgres and chunked on its own, after the batch, one at a time: its payload
is decoded and dropped, its chunks are written as they are cut, and the
transaction that writes them deletes the payload.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from soulprint.agents.containment import batch_counted, contained, sources
from soulprint.agents.flow import complete_if_chunked, emit
from soulprint.agents.offload import iterate_in_thread
from soulprint.domain.chunking import chunk_conversation, iter_chunks
from soulprint.domain.fingerprint import conversation_fingerprint
from soulprint.models.events import (
    ChunkRef,
    ConversationChunked,
    ConversationImported,
    IngestCompleted,
    messages_from_payload,
)
from soulprint.models.jobs import JobStatus
from soulprint.services.db import ChunkWrite
from soulprint.services.db.chunks import Carried

log = logging.getLogger("soulprint.agents.chunker")

_STREAM_BATCH = 2000  # chunks of a conversation sent by reference cut ahead of the write


def register(rt) -> None:
    settings = rt.settings
    app, conversations, _ = rt.source(JobStatus.CHUNKING)

    @app.agent(conversations, name="soulprint.chunker")
    async def chunker(stream):
        async for events in stream.take_events(settings.batch_size, within=settings.batch_window_s):
            await rt.parsing.wait_idle()  # the parse (and so quick_ready) goes first here
            with sources(events) as batch:  # containment finds each event's original record
                await chunk_batch(rt, batch)


async def chunk_batch(rt, batch: list) -> None:
    conversations = [e for e in batch if isinstance(e, ConversationImported)]
    completed = [e for e in batch if isinstance(e, IngestCompleted)]
    await chunk_and_emit(rt, [e for e in conversations if not e.by_reference])
    for event in conversations:
        if event.by_reference:  # tens of MB each: one at a time
            await contained(rt, "chunker", event, lambda event=event: chunk_stored(rt, event))
    for job_id in sorted({e.job_id for e in conversations} | {e.job_id for e in completed}):
        try:
            await complete_if_chunked(rt, job_id)
        except Exception:  # noqa: BLE001 - the reconciler notices a job that stops moving
            log.exception("completion check failed for job %s", job_id)


async def chunk_and_emit(rt, events: list[ConversationImported]) -> None:
    if not events:
        return
    try:
        async with batch_counted("chunker", events):
            carried, written = await write_batch(rt, events)
    except Exception:  # noqa: BLE001 - find the poison message one by one
        carried, written = [], []
        for event in events:
            async def one(event=event):
                c, w = await write_batch(rt, [event])
                carried.extend(c)
                written.extend(w)
            await contained(rt, "chunker", event, one)
    # Only the medium chunks travel on: they are what fact extraction reads (the
    # reconciler's re-drives send the same); every tier is in Postgres.
    await emit(rt, (
        ConversationChunked(
            job_id=w.job_id, user_id=w.user_id, conversation_id=w.conversation.id,
            chunks=[ChunkRef(chunk_id=k.id, tier=k.tier, token_count=k.token_count)
                    for k in w.chunks if k.tier == "medium"],
        )
        for w in written
    ))
    await emit(rt, (carried_event(c) for c in carried))


async def write_batch(rt, events: list[ConversationImported]) -> tuple[list[Carried], list[ChunkWrite]]:
    """Carry over the conversations unchanged since the person's current import (same
    fingerprint: their rows are copied, nothing is cut), chunk and write the others."""
    # Decoding, hashing and chunking a batch is a second or so of pure CPU: in a
    # thread, the event loop keeps serving the latency-critical path (someone's
    # quick pass) between the interpreter's switches instead of after the whole batch.
    config = rt.settings.chunking
    candidates = await asyncio.to_thread(_fingerprint_all, events, config)
    carried = await rt.db.jobs.carry_conversations(candidates)
    copied = {(c.job_id, c.conversation_id) for c in carried}
    rest = [w for w in candidates if (w.job_id, w.conversation.id) not in copied]
    writes = await asyncio.to_thread(_chunk_all, rest, config)
    return carried, await rt.db.jobs.write_chunks(writes)


def carried_event(c: Carried) -> ConversationChunked:
    """A carried conversation's chunk event, as if just chunked: the facts and embed stages
    find its chunks done (nothing to send) unless the previous import had not finished them."""
    return ConversationChunked(job_id=c.job_id, user_id=c.user_id, conversation_id=c.conversation_id,
                               chunks=[ChunkRef(chunk_id=k, tier="medium", token_count=n) for k, n in c.medium])


async def chunk_stored(rt, event: ConversationImported) -> None:
    """A conversation sent by reference: load and decode its payload, then cut its chunks in
    a thread while they are written (never all three tiers in memory at once)."""
    stored = await rt.db.chunks.load_payload(event.job_id, event.conversation_id)
    if stored is None:
        return  # chunked already (a redelivery), or its job failed: nothing left to do
    conv = await asyncio.to_thread(lambda: event.to_domain(messages_from_payload(stored)))
    del stored  # the decoded messages are all that is needed now
    fingerprint = await asyncio.to_thread(conversation_fingerprint, conv, rt.settings.chunking)
    carried = await rt.db.jobs.carry_conversations([ChunkWrite(
        job_id=event.job_id, user_id=event.user_id, conversation=conv, chunks=[], fingerprint=fingerprint)])
    if carried:  # unchanged since the current import: copied, its payload deleted
        return await emit(rt, [carried_event(c) for c in carried])
    batches = iterate_in_thread(iter_chunks(event.user_id, conv, rt.settings.chunking),
                                batch_size=_STREAM_BATCH, ahead=2)
    try:
        moved = await rt.db.jobs.write_stored_chunks(event.job_id, event.user_id, conv, fingerprint, batches)
    finally:
        await batches.aclose()
    await emit(rt, moved.emit)


def _fingerprint_all(events: list[ConversationImported], config) -> list[ChunkWrite]:
    """Each event's conversation with its fingerprint, not chunked yet."""
    writes = []
    for event in events:
        conv = event.to_domain()
        writes.append(ChunkWrite(job_id=event.job_id, user_id=event.user_id, conversation=conv, chunks=[],
                                 fingerprint=conversation_fingerprint(conv, config)))
    return writes


def _chunk_all(writes: list[ChunkWrite], config) -> list[ChunkWrite]:
    return [replace(w, chunks=chunk_conversation(w.user_id, w.conversation, config)) for w in writes]
