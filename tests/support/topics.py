"""Waiting for consumer groups to read a topic to its end (a replay has been consumed)."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from soulprint.services.deadletters import topic_name
from soulprint.services.replay import consumer_groups
from support.waiting import wait_until


async def _behind(settings, topic: str) -> int:
    """Records of ``topic`` some group that reads it has not committed yet."""
    full = topic_name(settings, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(full, p) for p in sorted(consumer.partitions_for_topic(full) or ())]
        ends = await consumer.end_offsets(tps) if tps else {}
    finally:
        await consumer.stop()
    behind = 0
    for group in consumer_groups(settings, topic):
        reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False)
        await reader.start()
        try:
            for tp in tps:
                behind += max(0, ends[tp] - (await reader.committed(tp) or 0))
        finally:
            await reader.stop()
    return behind


async def consumed(settings, topic: str, limit_s: float = 120.0) -> None:
    await wait_until(lambda: _behind(settings, topic), lambda n: n == 0, limit_s=limit_s,
                     what=f"the consumer groups of {topic} to reach its end")
