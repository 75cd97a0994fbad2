"""No person waits behind another's bulk work: every stage a person waits on has a lane.

faust hands one app's fetched messages to all of its agents through one
conductor, so an agent whose queue is full holds back the others of its app.
The stage table says which lane (consumer group) consumes each stage; the
runtime builds one app per lane.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from soulprint.agents import chunker as chunker_agent
from soulprint.models.domain import Conversation, Message
from soulprint.models.events import ConversationImported
from soulprint.models.jobs import FullPassStage, JobStatus, QuickStatus
from soulprint.topics import conversation_key
from soulprint.topics.stages import STAGES, Lane
from support.pipeline import publish_import
from support.waiting import wait_until

SMALL_EXPORT = Path(__file__).resolve().parent / "fixtures" / "exports" / "chatgpt_classic" / "conversations.json"


def test_every_stage_a_person_waits_on_has_a_lane_apart_from_bulk_work():
    lanes = {s.state: s.lane for s in STAGES}
    assert lanes[JobStatus.CHUNKING] is Lane.BULK
    waited_on = (JobStatus.PARSING, QuickStatus.RUNNING, FullPassStage.FACTS, FullPassStage.CONSOLIDATING,
                 FullPassStage.MEMORY, FullPassStage.SECTIONS)
    assert all(lanes[state] is not Lane.BULK for state in waited_on)
    assert lanes[JobStatus.PARSING] is not lanes[QuickStatus.RUNNING]


async def test_the_runtime_runs_one_consumer_group_per_lane(runtime):
    groups = {lane: app.app.conf.id for lane, app in runtime.lanes.items()}
    assert set(groups) == set(Lane)
    assert len(set(groups.values())) == len(Lane)
    assert groups[Lane.BULK] == runtime.settings.app_id
    for s in STAGES:
        app, topic, _ = runtime.source(s.state)
        assert app is runtime.lanes[s.lane].app
        assert topic.get_topic_name() == f"{runtime.settings.topic_prefix}.{s.topic.name}"


async def test_a_small_import_reaches_quick_ready_while_the_chunker_is_stuck(runtime, user_id, monkeypatch):
    """Another person's export holds the chunker with a full queue; this person's
    parse and quick pass go on all the same (before lanes, ingest shared the
    chunker's conductor and waited behind its queue)."""
    rt = runtime
    gate, held = asyncio.Event(), asyncio.Event()
    real_chunk_batch = chunker_agent.chunk_batch

    async def stuck(rt_, batch):
        held.set()
        await gate.wait()
        await real_chunk_batch(rt_, batch)

    monkeypatch.setattr(chunker_agent, "chunk_batch", stuck)
    try:
        # More conversations than the chunker takes at once and buffers behind
        # that, for a job that does not exist (written as nothing once released).
        ghost_job, flooder = str(uuid.uuid4()), f"flooder-{uuid.uuid4().hex[:6]}"
        for seq in range(3 * (rt.settings.batch_size + rt.settings.stream_buffer)):
            conv = Conversation(id=f"ghost-{seq}", title=None, created_at=None, updated_at=None, source="chatgpt",
                                messages=[Message(id="m", role="user", text="hello", time=None)])
            await rt.topics.conversations.send(key=conversation_key(flooder, conv.id),
                                               value=ConversationImported.from_domain(ghost_job, flooder, seq, conv))
        await asyncio.wait_for(held.wait(), timeout=60)  # a guard against a hang, not a timing

        job_id = await publish_import(rt.settings, user_id, SMALL_EXPORT)
        job = await wait_until(lambda: rt.db.jobs.get(job_id),
                               lambda j: j is not None and j.quick_status in (QuickStatus.READY, QuickStatus.FAILED),
                               limit_s=60, what="the small import's quick pass while the chunker is stuck")
        assert job.quick_status == QuickStatus.READY
        assert not gate.is_set()  # the chunker never moved meanwhile
    finally:
        gate.set()
