"""Facts: chunks → facts.

Take a batch of chunk events from the stream, keep the medium chunks of jobs
whose full pass is on, pack them into LLM requests, parse each answer into
facts attributed to their own chunk, write them per chunk (idempotent), and
when the last chunk of a job has its facts, trigger consolidation.

Parallelism comes from partitions and workers (chunk events are keyed per
conversation) plus a few batches in flight per worker; the LLM layer's
adaptive limit keeps the provider within its rate limit.
"""

from __future__ import annotations

import asyncio
import logging

from soulprint.domain.facts import build_fact_requests, parse_fact_result
from soulprint.models.events import ChunkRef, ConversationChunked, FactsExtracted
from soulprint.topics import conversation_key

log = logging.getLogger("soulprint.agents.facts")


def register(rt) -> None:
    s = rt.settings

    # On a consumer group of its own (rt.facts_app): chunk events never queue
    # behind the chunker's backlog of conversations.
    # concurrency > 1 can commit an offset past an unfinished batch (faust
    # #606); the reconciler re-drives any chunk left without facts.
    @rt.facts_app.agent(rt.facts_topics.chunks, name="soulprint.facts", concurrency=s.facts_concurrency)
    async def facts(stream):
        async for batch in stream.take(s.facts_batch_size, within=s.batch_window_s):
            await rt.parsing.wait_idle()  # the parse (and so quick_ready) goes first here
            try:
                await extract_batch(rt, batch)
            except Exception:  # noqa: BLE001 - never escape the loop (#315); reconciler re-drives
                log.exception("facts batch failed; its chunks will be re-driven")


async def extract_batch(rt, events: list) -> None:
    by_job: dict[str, tuple[str, list[str]]] = {}
    for e in events:
        if not isinstance(e, ConversationChunked):
            continue
        user, ids = by_job.setdefault(e.job_id, (e.user_id, []))
        ids.extend(_field(c, "chunk_id") for c in e.chunks if _field(c, "tier") == "medium")
    plan = await rt.db.extraction_plan(list(by_job), rt.settings.min_full_pass_conversations)
    await asyncio.gather(*(
        extract_job(rt, job_id, user_id, chunk_ids)
        for job_id, (user_id, chunk_ids) in by_job.items()
        if plan.get(job_id) == "extract" and chunk_ids
    ))


async def extract_job(rt, job_id: str, user_id: str, chunk_ids: list[str]) -> None:
    chunks = await rt.db.chunks_to_extract(job_id, chunk_ids)
    if not chunks:
        return await finish_if_extracted(rt, job_id, user_id)
    requests = build_fact_requests(user_id, job_id, chunks, token_budget=rt.settings.facts_request_tokens)
    results = await rt.llm.complete_many([request for request, _ in requests])
    facts, done, failed, error = [], [], [], ""
    for (_, group), result in zip(requests, results):
        if result.ok:
            facts.extend(parse_fact_result(user_id, job_id, result.data, group))
            done.extend(c.chunk_id for c in group)
        else:
            failed.extend(c.chunk_id for c in group)
            error = result.error or "extraction failed"
    progress = None
    if failed:
        await rt.db.extraction_failed(job_id, failed, error)
    if done:
        progress = await rt.db.write_facts(job_id, done, facts)
    await finish_if_extracted(rt, job_id, user_id, progress)


async def finish_if_extracted(rt, job_id: str, user_id: str, progress: dict | None = None) -> None:
    """Every extraction chunk has its facts: hand the job to consolidation.

    ``progress`` is the count a write just took under the job lock; without
    it the rows are counted again. Any number of workers may send this; the
    consolidation agent's state transition lets exactly one of them start it.
    """
    job = progress or await rt.db.refresh_extraction(job_id)
    if (job and job["full_pass_status"] == "processing" and job["full_pass_stage"] == "facts"
            and job["extraction_done"] >= job["extraction_total"]):
        await rt.topics.facts.send(key=job_id, value=FactsExtracted(job_id=job_id, user_id=user_id,
                                                                     facts=job["facts_total"]))


async def redrive_extraction(rt, job_id: str, user_id: str) -> int:
    """Publish chunk events again for every medium chunk still without facts."""
    pending, exhausted = await rt.db.unextracted_chunks(job_id, rt.settings.extraction_max_attempts)
    for conversation_id, refs in pending.items():
        await rt.topics.chunks.send(
            key=conversation_key(user_id, conversation_id),
            value=ConversationChunked(
                job_id=job_id, user_id=user_id, conversation_id=conversation_id,
                chunks=[ChunkRef(chunk_id=c, tier="medium", token_count=n) for c, n in refs],
            ),
        )
    if not pending and exhausted:
        await rt.db.fail_full_pass(job_id, f"{exhausted} chunks failed fact extraction "
                                           f"{rt.settings.extraction_max_attempts} times")
    elif not pending:
        await finish_if_extracted(rt, job_id, user_id)
    return len(pending)


async def after_chunking(rt, job_id: str) -> None:
    """Chunking has just completed (this caller won it): start the full pass's facts stage."""
    job = await rt.db.get_job(job_id)
    if job is None or job["full_pass_status"] != "processing":
        return
    if job["full_pass_deferred"]:
        await redrive_extraction(rt, job_id, job["user_id"])
    else:
        await finish_if_extracted(rt, job_id, job["user_id"])


def _field(ref, name: str):
    # nested records arrive as dicts when another producer wrote the event
    return ref[name] if isinstance(ref, dict) else getattr(ref, name)
