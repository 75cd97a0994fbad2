"""Ingest: imports → conversations.

Receive an ImportRequested, claim the job, stream the export through the
parser (in a thread, constant memory), emit one ConversationImported per
conversation while keeping a bounded sample of the richest ones, record the
totals, hand the sample to the quick pass, then emit IngestCompleted.

A conversation whose messages would take more than
SOULPRINT_INLINE_CONVERSATION_BYTES in its event is stored in Postgres first
and its event carries a reference instead (models/events.py): events stay
small, and no producer batch or consumer fetch ever holds a large conversation.
"""

from __future__ import annotations

import time
from dataclasses import asdict

from soulprint.agents.containment import contained
from soulprint.agents.flow import complete_if_chunked, emit
from soulprint.agents.offload import iterate_in_thread
from soulprint.domain.parsing import ExportReader
from soulprint.domain.sampling import ConversationSampler
from soulprint.models.events import ConversationImported, ImportRequested, inline_bytes, inline_bytes_bound, payload
from soulprint.models.jobs import JobStatus


def register(rt) -> None:
    app, imports, _ = rt.source(JobStatus.PARSING)

    @app.agent(imports, name="soulprint.ingest")
    async def ingest(stream):
        async for event in stream:
            await contained(rt, "ingest", event, lambda: ingest_export(rt, event))


async def ingest_export(rt, event: ImportRequested) -> None:
    jobs = rt.db.jobs
    await jobs.create(event.job_id, event.user_id, event.source_uri)
    if not await jobs.claim_ingest(event.job_id, rt.worker_id, rt.settings.stale_claim_s):
        return  # a redelivery, or another worker has it

    # From storage (an upload: a temporary download for a bucket), or the file:// path `soulprint import` gave.
    async with rt.storage.local_copy(event.source_uri) as path:
        reader = ExportReader(path, limits=rt.settings.parse_limits)
        sampler = ConversationSampler()

        def parse_and_sample():  # runs in the parser's thread: the sampler is its alone
            for conv in reader:
                sampler.add(conv)
                yield conv
                del conv  # not held while the next one is parsed

        with rt.parsing:
            await emit_conversations(rt, event, reader, parse_and_sample())
    await finish_export(rt, event, reader, sampler)


async def emit_conversations(rt, event: ImportRequested, reader: ExportReader, conversations) -> None:
    seq = 0
    last_report = time.monotonic()
    # Batches (and what the parser may run ahead) are bounded by text size too.
    async for batch in iterate_in_thread(conversations, weigh=text_chars,
                                         batch_weight=rt.settings.inline_conversation_bytes):
        for conv in batch:
            await emit(rt, [await conversation_event(rt, event, seq, conv)])
            seq += 1
        del batch, conv  # a large conversation is not kept while the next one is parsed
        # Status-table writes are batched by time, not per conversation.
        if time.monotonic() - last_report >= rt.settings.progress_interval_s:
            last_report = time.monotonic()
            s = reader.summary
            await rt.db.jobs.report_parsing(
                event.job_id, bytes_read=s.bytes_read, bytes_total=reader.bytes_total,
                conversations=s.conversations, messages=s.messages, excluded=s.excluded,
            )


def text_chars(conv) -> int:
    return sum(len(m.text) for m in conv.messages)


async def conversation_event(rt, event: ImportRequested, seq: int, conv) -> ConversationImported:
    """The conversation inline, or stored first and referenced when its messages would not fit."""
    limit = rt.settings.inline_conversation_bytes
    if inline_bytes_bound(conv) > limit:  # rare: only then is it serialised to be measured
        stored = payload(conv)
        if inline_bytes(conv, stored) > limit:
            await rt.db.chunks.store_payload(event.job_id, event.user_id, conv.id, stored)
            return ConversationImported.from_domain(event.job_id, event.user_id, seq, conv, stored=stored)
    return ConversationImported.from_domain(event.job_id, event.user_id, seq, conv)


async def finish_export(rt, event: ImportRequested, reader: ExportReader, sampler: ConversationSampler) -> None:
    summary = reader.summary
    samples = [asdict(s) for s in sampler.result(summary.newest_message_time)]
    moved = await rt.db.jobs.finish_ingest(event.job_id, summary, reader.profile, samples)
    if moved.job is None:
        return  # failed or taken over meanwhile: the newer owner reports
    await emit(rt, moved.emit)  # the quick pass's sample, then the end of the export
    # The chunker may already have written every conversation before the
    # totals were known; then nobody else would notice the job is done.
    await complete_if_chunked(rt, event.job_id)
