"""Consumer lag, read from the broker: per consumer group and topic, messages not yet consumed.

For each group, its committed offsets on every partition of our topics
(OffsetFetch, through the admin client, the partitions named: Tansu does not
answer the "all partitions" form), and each partition's end offset (ListOffsets
"latest"). Lag is the end minus the committed offset, summed over partitions; a
partition the group has not committed on yet counts from the log's start
(faust starts a new group at the earliest offset). Only "earliest" and
"latest" are asked for: ListOffsets by timestamp is unreliable on Tansu, these
two are exact there as on Kafka.

Fresh clients per reading, closed after it: a scrape every 15 to 60 seconds
needs no standing connection, and a broker that went away leaves none stuck.
The caller bounds the time (asyncio.wait_for).
"""

from __future__ import annotations

import asyncio
from typing import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

REQUEST_TIMEOUT_MS = 3000


async def consumer_lag(bootstrap: str, groups: Iterable[str], topic_prefix: str) -> dict[tuple[str, str], int]:
    """{(group, topic): lag} for the topics named ``<topic_prefix>.*`` that each group has committed on."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        await admin.start()
        await consumer.start()
        # Every partition of our topics, named: Tansu answers OffsetFetch only for named partitions.
        topics = sorted(t for t in await consumer.topics() if t.startswith(f"{topic_prefix}."))
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not partitions:
            return {}
        groups = list(groups)
        fetched = await asyncio.gather(*(admin.list_consumer_group_offsets(g, partitions=partitions) for g in groups))
        end = await consumer.end_offsets(partitions)
        start = await consumer.beginning_offsets(partitions)
        lag: dict[tuple[str, str], int] = {}
        for group, offsets in zip(groups, fetched):
            position = {tp: meta.offset for tp, meta in offsets.items()}
            for topic in {tp.topic for tp, offset in position.items() if offset >= 0}:
                lag[(group, topic)] = sum(
                    max(0, end[tp] - (position[tp] if position.get(tp, -1) >= 0 else start[tp]))
                    for tp in partitions if tp.topic == topic)
        return lag
    finally:
        await consumer.stop()
        await admin.close()
