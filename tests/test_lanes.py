"""No person waits behind another's bulk work: every stage a person waits on has a lane.

faust hands one app's fetched messages to all of its agents through one
conductor, so an agent whose queue is full holds back the others of its app.
The stage table says which lane (consumer group) consumes each stage; the
runtime builds one app per lane.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from soulprint.models.jobs import FullPassStage, JobStatus, QuickStatus
from soulprint.topics.stages import STAGES, Lane
from support.pipeline import chunker_held, publish_import
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
    async with chunker_held(rt, monkeypatch, f"flooder-{uuid.uuid4().hex[:6]}") as gate:
        job_id = await publish_import(rt.settings, user_id, SMALL_EXPORT)
        job = await wait_until(lambda: rt.db.jobs.get(job_id),
                               lambda j: j is not None and j.quick_status in (QuickStatus.READY, QuickStatus.FAILED),
                               limit_s=60, what="the small import's quick pass while the chunker is stuck")
        assert job.quick_status == QuickStatus.READY
        assert not gate.is_set()  # the chunker never moved meanwhile
