"""Facts: chunks → facts.

Take a batch of chunk events from the stream, keep the conversations of jobs
whose full pass is on, pack each conversation's medium chunks into LLM
requests (domain/facts.py: per conversation, so the requests never depend on
which events shared the batch), send those requests that hold a chunk still
without facts, parse each answer into facts attributed to their own chunk
(counting those that name none), write them per chunk (idempotent), and when
the last chunk of a job has its facts, trigger consolidation.

The packing is computed over every medium chunk of the conversation, done
ones included, so a re-drive of a request that failed sends the same request
again (and a conversation carried over by a re-import sends nothing).

Parallelism comes from partitions and workers (chunk events are keyed per
conversation) plus a few batches in flight per worker; the LLM layer's
adaptive limit keeps the provider within its rate limit.
"""

from __future__ import annotations

import asyncio
import logging

from soulprint.agents.containment import batch_counted
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
                async with batch_counted("facts", batch):
                    await extract_batch(rt, batch)
            except Exception:  # noqa: BLE001 - never escape the loop (#315); reconciler re-drives
                log.exception("facts batch failed; its chunks will be re-driven")


async def extract_batch(rt, events: list) -> None:
    by_job: dict[str, tuple[str, set[str]]] = {}
    for e in events:
        if isinstance(e, ConversationChunked):
            by_job.setdefault(e.job_id, (e.user_id, set()))[1].add(e.conversation_id)
    plan = await rt.db.jobs.extraction_plan(list(by_job), rt.settings.min_full_pass_conversations)
    await asyncio.gather(*(
        extract_job(rt, job_id, user_id, sorted(conversation_ids))
        for job_id, (user_id, conversation_ids) in by_job.items()
        if plan.get(job_id) == "extract"
    ))


async def extract_job(rt, job_id: str, user_id: str, conversation_ids: list[str]) -> None:
    jobs = rt.db.jobs
    chunks, done_ids = await rt.db.chunks.to_extract(job_id, user_id, conversation_ids)
    requests = [(request, group) for request, group in
                build_fact_requests(user_id, job_id, chunks, token_budget=rt.settings.facts_request_tokens)
                if any(c.chunk_id not in done_ids for c in group)]
    if not requests:
        return await finish_if_extracted(rt, job_id)
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
            failed.extend(c.chunk_id for c in group if c.chunk_id not in done_ids)
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
