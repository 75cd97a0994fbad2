"""Facts: chunks → facts.

Take a batch of chunk events from the stream, keep the medium chunks of jobs
whose full pass is on, pack them into LLM requests, parse each answer into
facts attributed to their own chunk (counting those that name none), write
them per chunk (idempotent), and when the last chunk of a job has its facts,
trigger consolidation.

Parallelism comes from partitions and workers (chunk events are keyed per
conversation) plus a few batches in flight per worker; the LLM layer's
adaptive limit keeps the provider within its rate limit.
"""

from __future__ import annotations

import asyncio
import logging

from soulprint.agents.flow import emit
from soulprint.domain.facts import build_fact_requests, parse_fact_answer
from soulprint.models.events import ConversationChunked
from soulprint.models.jobs import FullPassStage

log = logging.getLogger("soulprint.agents.facts")


def register(rt) -> None:
    s = rt.settings

    # On a lane (consumer group) of its own: chunk events never queue behind
    # the chunker's backlog of conversations.
    # concurrency > 1 can commit an offset past an unfinished batch (faust
    # #606); the reconciler re-drives any chunk left without facts.
    app, chunks, _ = rt.source(FullPassStage.FACTS)

    @app.agent(chunks, name="soulprint.facts", concurrency=s.facts_concurrency)
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
    plan = await rt.db.jobs.extraction_plan(list(by_job), rt.settings.min_full_pass_conversations)
    await asyncio.gather(*(
        extract_job(rt, job_id, user_id, chunk_ids)
        for job_id, (user_id, chunk_ids) in by_job.items()
        if plan.get(job_id) == "extract" and chunk_ids
    ))


async def extract_job(rt, job_id: str, user_id: str, chunk_ids: list[str]) -> None:
    jobs = rt.db.jobs
    chunks = await rt.db.chunks.to_extract(job_id, chunk_ids)
    if not chunks:
        return await finish_if_extracted(rt, job_id)
    requests = build_fact_requests(user_id, job_id, chunks, token_budget=rt.settings.facts_request_tokens)
    results = await rt.llm.complete_many([request for request, _ in requests])
    facts, done, failed, error = [], [], [], ""
    dropped: dict[str, int] = {}  # per answer, kept with the first chunk of its request
    for (_, group), result in zip(requests, results):
        if result.ok:
            parsed = parse_fact_answer(user_id, job_id, result.data, group)
            facts.extend(parsed.facts)
            dropped[group[0].chunk_id] = parsed.dropped
            done.extend(c.chunk_id for c in group)
        else:
            failed.extend(c.chunk_id for c in group)
            error = result.error or "extraction failed"
    if failed:
        await rt.db.facts.extraction_failed(job_id, failed, error)
    if done:
        await emit(rt, (await jobs.record_facts(job_id, done, facts, dropped)).emit)
    else:
        await finish_if_extracted(rt, job_id)


async def finish_if_extracted(rt, job_id: str) -> None:
    """Recount; if every extraction chunk has its facts, the state machine hands the job to consolidation.

    Any number of workers may send that; the consolidation agent's state
    transition lets exactly one of them start it.
    """
    await emit(rt, (await rt.db.jobs.recount_extraction(job_id)).emit)


def _field(ref, name: str):
    # nested records arrive as dicts when another producer wrote the event
    return ref[name] if isinstance(ref, dict) else getattr(ref, name)
