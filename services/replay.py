"""Replay and reprocessing, for operators: against any broker, the embedded one included.

``replay_topic`` sends a topic's records back to it, key, value and headers
byte for byte (events are self-describing JSON: `__faust.ns` names the class),
so the same partition and the same consumer groups see them again; every stage
is idempotent, so the rows stay the same. Where it starts:

- ``from_beginning``: the first offset the broker holds, up to the end as of now;
- otherwise, per partition, the lowest offset committed by the consumer groups
  that read the topic (topics/stages.py: one group per lane), up to the end:
  what some group has not consumed yet (after `kafka-consumer-groups
  --reset-offsets`, or a worker that stopped), and nothing when all are caught up.

``reprocess`` re-drives the person's current import from a stage through the
state machine (Jobs.reopen) and publishes that stage's trigger.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from aiokafka import AIOKafkaConsumer, TopicPartition

from soulprint.services.deadletters import KafkaSender, Record, read_topic, topic_name
from soulprint.settings import Settings
from soulprint.topics import ALL
from soulprint.topics.stages import STAGES, Lane, route

REPROCESS_STAGES = ("parse", "chunks", "facts", "consolidate", "memory", "sections")
# The query service's view reads these outside the stage table.
_QUERY_TOPICS = ("sections", "memory")


class ReplayError(RuntimeError):
    """A replay or reprocess that cannot be done; the message is one line for the operator."""


def consumer_groups(settings: Settings, topic: str) -> list[str]:
    """The consumer groups that read ``topic`` (its name without the prefix)."""
    lanes = {s.lane for s in STAGES if s.topic.name == topic} | ({Lane.QUERY} if topic in _QUERY_TOPICS else set())
    return sorted(settings.app_id if lane is Lane.BULK else f"{settings.app_id}-{lane.value}" for lane in lanes)


async def committed_offsets(settings: Settings, topic: str, partitions: list[int]) -> dict[int, int]:
    """Per partition, the lowest offset the topic's groups have committed (0 where one has none)."""
    lowest: dict[int, int] = {}
    for group in consumer_groups(settings, topic):
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            for p in partitions:
                offset = await consumer.committed(TopicPartition(topic_name(settings, topic), p))
                lowest[p] = min(lowest.get(p, offset or 0), offset or 0)
        finally:
            await consumer.stop()
    return lowest


def _matches(record: Record, job: str | None, user: str | None) -> bool:
    if job is None and user is None:
        return True
    try:
        value = json.loads(record.value or b"null")
    except ValueError:
        return False
    if not isinstance(value, dict):
        return False
    return (job is None or value.get("job_id") == job) and (user is None or value.get("user_id") == user)


@dataclass(frozen=True)
class ReplayReport:
    topic: str
    read: int
    sent: int
    from_beginning: bool

    def to_json(self) -> dict:
        return {"topic": self.topic, "read": self.read, "sent": self.sent, "from_beginning": self.from_beginning}


async def replay_topic(settings: Settings, topic: str, *, job: str | None = None, user: str | None = None,
                       from_beginning: bool = False) -> ReplayReport:
    if topic not in {spec.name for spec in ALL}:
        raise ReplayError(f"no such topic: {topic!r} (one of {', '.join(spec.name for spec in ALL)})")
    full = topic_name(settings, topic)
    start = None
    if not from_beginning:
        start = await committed_offsets(settings, topic, list(range(_partitions(settings, topic))))
    records = await read_topic(settings, full, start=start)
    chosen = [r for r in records if _matches(r, job, user)]
    async with KafkaSender(settings) as send:
        for r in chosen:
            await send(full, r.key, r.value, r.headers)
    return ReplayReport(topic, len(records), len(chosen), from_beginning)


def _partitions(settings: Settings, topic: str) -> int:
    spec = next(s for s in ALL if s.name == topic)
    return spec.partitions or settings.partitions


async def reprocess(settings: Settings, db, user_id: str, from_stage: str) -> dict:
    """Roll the person's current import back to before ``from_stage`` and publish its trigger."""
    if from_stage not in REPROCESS_STAGES:
        raise ReplayError(f"--from-stage must be one of {', '.join(REPROCESS_STAGES)}, got {from_stage!r}")
    job_id = await db.jobs.current_job_id(user_id)
    if job_id is None:
        raise ReplayError(f"{user_id!r} has no complete import to reprocess")
    job = await db.jobs.get(job_id)
    if from_stage in ("parse", "chunks") and not _readable(job.source_uri):
        # A parse that cannot read its export would fail the person's current import.
        raise ReplayError(f"the export of import {job_id} is gone from {job.source_uri}: nothing to re-read")
    moved = await db.jobs.reopen(job_id, from_stage)
    if moved.job is None:
        raise ReplayError(f"import {job_id} cannot be reprocessed from {from_stage} now: a pass of it is running, "
                          "it has dead letters, a newer import of the person is open, or (facts, consolidate, "
                          "memory, sections) its full pass was skipped")
    await publish(settings, moved.emit)
    return {"job_id": job_id, "user_id": user_id, "from_stage": from_stage, "events": len(moved.emit)}


def _readable(uri: str) -> bool:
    """A local export must still be there; other storage (s3://) is the workers' to read."""
    if not uri.startswith("file://"):
        return True
    return Path(unquote(urlparse(uri).path)).exists()


async def publish(settings: Settings, events) -> None:
    """Send events where the stage table routes them, serialised as the workers' faust topics do."""
    async with KafkaSender(settings) as send:
        for event in events:
            spec, key = route(event)
            await send(topic_name(settings, spec.name), key.encode(), event.dumps(), [])
