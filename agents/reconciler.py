"""Reconciler: re-drive work that stopped moving.

Kafka delivery is at-least-once, but messages can still go missing for a
job: a worker killed mid-batch, the embedded broker gone with its process,
faust #606 (an offset committed past an unfinished message) or #315 (an
escaped exception acking its message). The status table knows what should
have happened, so a periodic task on every worker looks for jobs whose row
has not moved for a while and publishes their work again. Every stage is
idempotent, so a re-drive of work that was merely slow costs time, not
correctness. Re-drives are bounded; past the bound, or past the full pass's
hard deadline, the job fails with its reason.
"""

from __future__ import annotations

import logging
import time

from soulprint.agents.facts import redrive_extraction
from soulprint.models.events import (
    FactsConsolidated,
    FactsExtracted,
    ImportRequested,
    MemoryWritten,
    QuickPassRequested,
)

log = logging.getLogger("soulprint.reconciler")

RECONCILER_LOCK = 0x5017_0002  # one reconciler at a time across workers

# A stalled full-pass stage is rolled back to the stage before it, and the
# event that starts it is published again.
ROLLBACK = {
    "consolidating": ("facts", FactsExtracted),
    "memory": ("consolidating", FactsConsolidated),
    "sections": ("memory", MemoryWritten),
}


def register(rt) -> None:
    @rt.app.timer(interval=rt.settings.reconcile_interval_s, on_leader=False)
    async def reconcile():
        try:
            await reconcile_once(rt)
        except Exception:  # noqa: BLE001 - a timer that raises stops for good
            log.exception("reconciler pass failed")


async def reconcile_once(rt) -> int:
    """One pass over stalled jobs; returns how many were re-driven or failed."""
    s = rt.settings
    async with rt.db.pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RECONCILER_LOCK):
            return 0  # another worker is reconciling right now
        try:
            handled = 0
            for job in await rt.db.stalled_jobs(s.stall_after_s):
                handled += await _reconcile_job(rt, job)
            return handled
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", RECONCILER_LOCK)


async def _reconcile_job(rt, job: dict) -> int:
    s, db, topics = rt.settings, rt.db, rt.topics
    job_id, user_id = job["job_id"], job["user_id"]

    if job["status"] in ("queued", "parsing", "chunking"):
        if job["attempts"] >= s.max_redrives:
            await db.fail_job(job_id, "stalled", f"import stalled in {job['status']} after {job['attempts']} attempts")
            return 1
        log.warning("re-driving import %s (stalled in %s)", job_id, job["status"])
        await db.release_ingest(job_id)
        await topics.imports.send(key=user_id, value=ImportRequested(
            job_id=job_id, user_id=user_id, source_uri=job["source_uri"], requested_at=time.time()))
        await db.note_redrive(job_id, full_pass=False)
        return 1

    handled = 0
    if job["status"] == "complete" and job["quick_status"] in ("pending", "running"):
        full = await db.get_job(job_id)
        await topics.quick.send(key=user_id, value=QuickPassRequested(
            job_id=job_id, user_id=user_id, samples=full["sample"] or [], profile=full["profile"] or {},
            conversations=full["conversations"]))
        await db.note_redrive(job_id, full_pass=False)
        handled += 1

    if job["full_pass_status"] == "processing":
        handled += await _reconcile_full_pass(rt, job)
    return handled


async def _reconcile_full_pass(rt, job: dict) -> int:
    s, db = rt.settings, rt.db
    job_id, user_id, stage = job["job_id"], job["user_id"], job["full_pass_stage"]
    if (job["full_pass_age_s"] or 0) > s.full_pass_deadline_s:
        await db.fail_full_pass(job_id, f"full pass exceeded its deadline of {s.full_pass_deadline_s:.0f}s "
                                        f"(stalled in {stage})")
        return 1
    if job["full_pass_redrives"] >= s.max_redrives:
        await db.fail_full_pass(job_id, f"full pass stalled in {stage} after {job['full_pass_redrives']} re-drives")
        return 1
    log.warning("re-driving full pass of %s (stalled in %s)", job_id, stage)
    await db.note_redrive(job_id, full_pass=True)
    if stage == "facts":
        await redrive_extraction(rt, job_id, user_id)
    elif stage in ROLLBACK:
        previous, trigger = ROLLBACK[stage]
        if await db.advance_full_pass(job_id, stage, previous):
            topic = {"facts": rt.topics.facts, "consolidating": rt.topics.consolidated,
                     "memory": rt.topics.memory}[previous]
            value = trigger(job_id=job_id, user_id=user_id)
            if isinstance(value, MemoryWritten):
                memory = await db.get_memory(job_id)
                value = MemoryWritten(job_id=job_id, user_id=user_id, memory_md=memory["memory_md"] if memory else "")
            await topic.send(key=job_id, value=value)
    return 1
