"""Reconciler: re-drive work that stopped moving.

Kafka delivery is at-least-once, but messages can still go missing for a
job: a worker killed mid-batch, the embedded broker gone with its process,
faust #606 (an offset committed past an unfinished message) or #315 (an
escaped exception acking its message). The status table knows what should
have happened, so a periodic task on every worker looks for jobs whose row
has not moved for a while and publishes their work again. Every stage is
idempotent, so a re-drive of work that was merely slow costs time, not
correctness. Re-drives are bounded (each counted once); past the bound, or
past the full pass's hard deadline, the job fails with its reason. Failed
jobs (superseded ones included) are never re-driven.

A stalled full-pass stage is rolled back to the state it moved on from and
its trigger sent again: both come from the stage table (topics/stages.py).

A model change re-embeds in the background: each pass (the first when the
worker starts) restarts the embedding of a few people's current imports that
are in another space than the configured one, in it, and re-drives their
chunks; the stalled-job path then carries them to the end like any other
embedding. The old space's vectors go once the new space is complete.
"""

from __future__ import annotations

import logging

from soulprint.agents.flow import emit
from soulprint.models.events import ConversationChunked, MemoryWritten
from soulprint.models.jobs import EmbeddingStatus, FullPassStage, FullPassStatus, Job, JobStatus, QuickStatus
from soulprint.services.http.tus import sweep_expired
from soulprint.topics.stages import stage

log = logging.getLogger("soulprint.reconciler")


def register(rt) -> None:
    async def reconcile():
        try:
            await reconcile_once(rt)
        except Exception:  # noqa: BLE001 - a timer that raises stops for good
            log.exception("reconciler pass failed")

    # Once when the worker starts (a model change is noticed at once), then every interval.
    rt.app.task(reconcile)
    rt.app.timer(interval=rt.settings.reconcile_interval_s, on_leader=False)(reconcile)


async def reconcile_once(rt) -> int:
    """One pass over stalled jobs and re-embeddings; returns how many jobs were re-driven,
    failed or restarted in the current embedding space."""
    async with rt.db.reconciler_lock() as mine:
        if not mine:
            return 0  # another worker is reconciling right now
        handled = 0
        for job, full_pass_age_s in await rt.db.jobs.stalled(rt.settings.stall_after_s):
            acted, events = await reconcile_job(rt, job, full_pass_age_s)
            await emit(rt, events)
            handled += acted
        for job_id in await rt.db.jobs.to_reembed(rt.embedder.space.space_id, REEMBED_CONCURRENCY):
            events = await _reembed(rt, job_id)
            if events is not None:
                await emit(rt, events)
                handled += 1
        # Large current imports get their HNSW index once embedded; replaced ones lose it.
        await rt.db.search.maintain_indexes(rt.embedder.space)
        await sweep_expired(rt.db, rt.settings)  # expired resumable (tus) uploads and their bytes
        await _prune_notices(rt)
        return handled


PRUNE_BATCH = 5_000  # notices (and deliveries) one prune statement deletes at most
PRUNE_ROUNDS = 10  # prune statements one pass runs at most: a backlog is caught up over several passes


async def _prune_notices(rt) -> None:
    """The webhook outbox kept to its retention (services/db/notices.Notices.prune)."""
    for _ in range(PRUNE_ROUNDS):
        deliveries, notices = await rt.db.notices.prune(rt.settings.webhooks.retention_s, PRUNE_BATCH)
        if deliveries or notices:
            log.info("pruned %d webhook deliveries and %d notices past their retention", deliveries, notices)
        if deliveries < PRUNE_BATCH and notices < PRUNE_BATCH:
            return


async def reconcile_job(rt, job: Job, full_pass_age_s: float | None) -> tuple[int, list]:
    """Re-drive or fail one stalled job: how many of its parts were handled, and the events to send."""
    jobs = rt.db.jobs
    if job.is_open:
        log.warning("re-driving import %s (stalled in %s)", job.job_id, job.status)
        return 1, (await jobs.redrive_import(job, rt.settings.max_redrives)).emit
    handled, events = 0, []
    if job.status == JobStatus.COMPLETE and job.quick_status in (QuickStatus.PENDING, QuickStatus.RUNNING):
        events += (await jobs.redrive_quick(job)).emit
        handled += 1
    if job.full_pass_status == FullPassStatus.PROCESSING and not job.dead_letters:  # blocked: see Jobs.stalled
        events += await _reconcile_full_pass(rt, job, full_pass_age_s or 0.0)
        handled += 1
    if job.status == JobStatus.COMPLETE and job.embedding_status in (EmbeddingStatus.PENDING,
                                                                     EmbeddingStatus.PROCESSING):
        events += await _reconcile_embedding(rt, job)
        handled += 1
    return handled, events


REDRIVE_CONVERSATIONS = 10_000  # chunk events one embedding re-drive sends at most
# Embeddings open in the current space (re-embeddings and new imports) below which a pass
# restarts another current import of an older space: the embed lane works through a few
# people at a time instead of having every person's chunks queued (and looking stalled).
REEMBED_CONCURRENCY = 4


async def _reconcile_embedding(rt, job: Job) -> list:
    """Recount from the rows (starting the embedding if its start was lost); if chunks are still
    without vectors, send their conversations' chunk events again, within the re-drive bound.
    A job left in another space by a model change is re-embedded if it is the person's current
    import (an older one is not)."""
    jobs, space = rt.db.jobs, rt.embedder.space
    counted = (await jobs.recount_embedding(job) if job.embedding_total is not None
               else await jobs.start_embedding(job.job_id, rt.settings.embedding.tiers, space))
    job = counted or job
    if job.embedding_status not in (EmbeddingStatus.PENDING, EmbeddingStatus.PROCESSING):
        return []
    if job.embedding_model != space.space_id:
        events = await _reembed(rt, job.job_id)
        if events is None:
            await jobs.fail_embedding(job.job_id, f"the embedding space changed from {job.embedding_model}"
                                                  f" to {space.space_id} and this is not the current import")
        return events or []
    if job.embedding_redrives >= rt.settings.max_redrives:
        await jobs.fail_embedding(job.job_id, f"embedding stalled at {job.embedded}/{job.embedding_total} chunks"
                                              f" after {job.embedding_redrives} re-drives without progress")
        return []
    log.warning("re-driving embedding of %s (%s/%s chunks)", job.job_id, job.embedded, job.embedding_total)
    await jobs.note_embedding_redrive(job.job_id)
    return await _unembedded_chunk_events(rt, job)


async def _reembed(rt, job_id: str) -> list | None:
    """Restart the job's embedding in the current space; the events of its chunks to embed (the
    restart is no stall: it does not count as a re-drive). None: not restarted (not the
    person's current import, or in this space already)."""
    job = await rt.db.jobs.restart_embedding(job_id, rt.settings.embedding.tiers, rt.embedder.space)
    if job is None:
        return None
    log.info("re-embedding %s in %s (%s/%s chunks there already)", job_id, job.embedding_model,
                job.embedded, job.embedding_total)
    if job.embedding_status not in (EmbeddingStatus.PENDING, EmbeddingStatus.PROCESSING):
        return []
    return await _unembedded_chunk_events(rt, job)


async def _unembedded_chunk_events(rt, job: Job) -> list:
    """Chunk events for the job's conversations with chunks still without a vector of its space,
    at most REDRIVE_CONVERSATIONS (the rest follow on the next re-drive, once these are done)."""
    pending = await rt.db.embeddings.unembedded_conversations(
        job.job_id, job.embedding_tiers or [], job.embedding_model, REDRIVE_CONVERSATIONS)
    # No chunk refs: the embedding agent derives its ids, and the facts agent
    # (the other group on this topic) has nothing to do for an empty event.
    return [ConversationChunked(job_id=job.job_id, user_id=job.user_id, conversation_id=c, chunks=[])
            for c in pending]


async def _reconcile_full_pass(rt, job: Job, age_s: float) -> list:
    s, jobs = rt.settings, rt.db.jobs
    current = job.full_pass_stage
    if age_s > s.full_pass_deadline_s:
        await jobs.fail_full_pass(job.job_id, f"full pass exceeded its deadline of {s.full_pass_deadline_s:.0f}s "
                                              f"(stalled in {current})")
        return []
    if job.full_pass_redrives >= s.max_redrives:
        await jobs.fail_full_pass(job.job_id, f"full pass stalled in {current} after {job.full_pass_redrives} re-drives")
        return []
    log.warning("re-driving full pass of %s (stalled in %s)", job.job_id, current)
    await jobs.note_redrive(job.job_id, full_pass=True)
    if current == FullPassStage.FACTS:
        return (await jobs.redrive_extraction(job.job_id, s.extraction_max_attempts)).emit
    step = stage(current)
    if await jobs.advance_full_pass(job.job_id, current, step.after):
        return [await _trigger(rt, step.trigger, job)]
    return []


async def _trigger(rt, trigger: type, job: Job):
    if trigger is MemoryWritten:
        memory = await rt.db.soulprints.get_memory(job.job_id)
        return MemoryWritten(job_id=job.job_id, user_id=job.user_id, memory_md=memory["memory_md"] if memory else "")
    return trigger(job_id=job.job_id, user_id=job.user_id)
