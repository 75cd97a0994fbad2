"""Fact extraction is fed while the chunker is busy.

During a large import the chunker's queue holds thousands of conversations
for minutes. Chunk events must reach the facts agent all the same: it runs
on a consumer group of its own, so nothing it consumes waits behind them.
"""

from __future__ import annotations

import uuid

from soulprint.agents.flow import emit
from soulprint.domain.chunking import chunk_conversation
from soulprint.models.domain import Conversation, ExportSummary, Message, ProfileHints
from soulprint.models.events import ChunkRef, ConversationChunked
from soulprint.services.db import ChunkWrite
from soulprint.topics import conversation_key
from support.pipeline import chunker_held
from support.waiting import wait_until


def conversation(i: int) -> Conversation:
    msgs = [Message(id=f"c{i}-m{j}", role="user" if j % 2 == 0 else "assistant",
                    text=f"I moved to Lisbon in 2024 and work on the harbor project ({i}, {j}).", time=1.7e9 + j)
            for j in range(4)]
    return Conversation(id=f"c{i}", title=f"Talk {i}", created_at=1.7e9, updated_at=1.7e9 + 4, source="chatgpt",
                        messages=msgs)


async def job_in_facts_stage(rt, user_id: str, n: int) -> tuple[str, list[ChunkWrite], list]:
    """A job whose conversations are chunked and whose full pass waits for facts; and the events
    its completion sends (the facts stage's SmallConversationsReady), not sent yet."""
    db, s = rt.db, rt.settings
    job_id = str(uuid.uuid4())
    await db.jobs.create(job_id, user_id, "file:///export.json")
    assert await db.jobs.claim_ingest(job_id, "test", s.stale_claim_s)
    convs = [conversation(i) for i in range(n)]
    writes = await db.jobs.write_chunks([ChunkWrite(job_id=job_id, user_id=user_id, conversation=c,
                                               chunks=chunk_conversation(user_id, c, s.chunking)) for c in convs])
    assert len(writes) == n
    summary = ExportSummary(format="chatgpt", conversations=n, messages=4 * n, newest_message_time=1.7e9 + 4)
    assert (await db.jobs.finish_ingest(job_id, summary, ProfileHints(), [])).job
    completed = await db.jobs.complete_chunking(job_id, recent_days=s.recent_days,
                                                min_full_pass_conversations=s.min_full_pass_conversations,
                                                extraction_max_attempts=s.extraction_max_attempts)
    assert completed.job
    return job_id, writes, completed.emit


async def test_chunk_events_are_extracted_while_the_chunker_is_stuck(runtime, user_id, monkeypatch):
    rt = runtime
    n = max(rt.settings.min_full_pass_conversations, 1)
    job_id, writes, completion = await job_in_facts_stage(rt, user_id, n)

    async with chunker_held(rt, monkeypatch, user_id) as gate:
        for w in writes:
            await rt.topics.chunks.send(
                key=conversation_key(user_id, w.conversation.id),
                value=ConversationChunked(job_id=job_id, user_id=user_id, conversation_id=w.conversation.id,
                                          chunks=[ChunkRef(chunk_id=k.id, tier=k.tier, token_count=k.token_count)
                                                  for k in w.chunks]),
            )
        await emit(rt, completion)  # these conversations are small: packed together by the job's event
        job = await wait_until(lambda: rt.db.jobs.recount_extraction(job_id),
                               lambda moved: moved.job.extraction_done >= moved.job.extraction_total, limit_s=60,
                               what="every chunk's facts while the chunker is stuck")
        assert job.job.extraction_total == sum(1 for w in writes for k in w.chunks if k.tier == "medium")
        assert not gate.is_set()
