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

Small conversations (domain/facts.is_small) are not sent on their own: once
the job's chunking is complete, its SmallConversationsReady (keyed by job)
packs every one of them still without facts together, in conversation-id
order, so an export of many short conversations sends about one request per
eight of them instead of one each. A re-drive of the job's extraction sends
that event again with its conversations' events.

Parallelism comes from partitions and workers (chunk events are keyed per
conversation) plus a few batches in flight per worker; the LLM layer's
adaptive limit keeps the provider within its rate limit.
"""

from __future__ import annotations

import asyncio
import logging

from soulprint.agents.containment import batch_counted
from soulprint.agents.flow import emit
from soulprint.domain.facts import (SMALL_MAX_CHUNKS, RequestPacker, build_fact_requests, by_conversation,
                                   is_small, parse_fact_answer)
from soulprint.models.events import ConversationChunked, SmallConversationsReady
from soulprint.models.jobs import FullPassStage

log = logging.getLogger("soulprint.agents.facts")

SMALL_PAGE = 200  # conversations read at once while packing a job's small conversations
# Packed requests sent at once (at least): the LLM layer's adaptive limit sets how many are in flight.
SMALL_SEND = 128


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
    small: dict[str, str] = {}  # jobs whose small conversations are to be packed: their person
    for e in events:
        if isinstance(e, ConversationChunked):
            by_job.setdefault(e.job_id, (e.user_id, set()))[1].add(e.conversation_id)
        elif isinstance(e, SmallConversationsReady):
            small[e.job_id] = e.user_id
    plan = await rt.db.jobs.extraction_plan(list(by_job.keys() | small.keys()),
                                            rt.settings.min_full_pass_conversations)
    await asyncio.gather(
        *(extract_job(rt, job_id, user_id, sorted(conversation_ids))
          for job_id, (user_id, conversation_ids) in by_job.items() if plan.get(job_id) == "extract"),
        *(extract_small(rt, job_id, user_id) for job_id, user_id in small.items() if plan.get(job_id) == "extract"),
    )


async def extract_job(rt, job_id: str, user_id: str, conversation_ids: list[str]) -> None:
    """The conversations' own requests; the small ones wait for the job's SmallConversationsReady."""
    s = rt.settings
    chunks, done_ids = await rt.db.chunks.to_extract(job_id, user_id, conversation_ids)
    alone = [c for conversation in by_conversation(chunks).values()
             if not is_small(conversation, token_budget=s.facts_request_tokens)
             for c in conversation]
    requests = [(request, group) for request, group in
                build_fact_requests(user_id, job_id, alone, token_budget=s.facts_request_tokens)
                if any(c.chunk_id not in done_ids for c in group)]
    if not await send(rt, job_id, user_id, requests, done_ids):
        await finish_if_extracted(rt, job_id)


async def extract_small(rt, job_id: str, user_id: str) -> None:
    """Every small conversation of the job still without facts, packed together in conversation-id
    order (domain/facts.py, RequestPacker), read a page and sent a few requests at a time."""
    budget = rt.settings.facts_request_tokens
    packer = RequestPacker(user_id, job_id, token_budget=budget)
    pending: list = []  # packed, not sent yet
    sent, after = False, None
    while ids := await rt.db.chunks.small_candidates(job_id, after, SMALL_PAGE, SMALL_MAX_CHUNKS):
        after = ids[-1]
        chunks, done_ids = await rt.db.chunks.to_extract(job_id, user_id, ids)
        for conversation in by_conversation(chunks).values():
            if is_small(conversation, token_budget=budget) and not done_ids.intersection(
                    c.chunk_id for c in conversation):
                pending += packer.add(conversation)  # by_conversation: in its order
        if len(pending) >= SMALL_SEND:
            sent |= await send(rt, job_id, user_id, pending, set())
            pending = []
    sent |= await send(rt, job_id, user_id, pending + packer.close(), set())
    if not sent:
        await finish_if_extracted(rt, job_id)


async def send(rt, job_id: str, user_id: str, requests: list, done_ids: set[str]) -> bool:
    """Send the requests, write the facts of those answered and count the failures; whether any
    facts were written (the write also moves the job on)."""
    if not requests:
        return False
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
    if not done:
        return False
    await emit(rt, (await rt.db.jobs.record_facts(job_id, done, facts, dropped)).emit)
    return True


async def finish_if_extracted(rt, job_id: str) -> None:
    """Recount; if every extraction chunk has its facts, the state machine hands the job to consolidation.

    Any number of workers may send that; the consolidation agent's state
    transition lets exactly one of them start it.
    """
    await emit(rt, (await rt.db.jobs.recount_extraction(job_id)).emit)
