"""The Kafka client used outside the faust worker: the upload side publishes import events.

The upload service does not need a stream processor, only a producer; it
also declares the topics so that publishing before any worker has started
still lands on the right number of partitions.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from soulprint.models.events import ImportRequested
from soulprint.settings import Settings
from soulprint.topics import ALL, IMPORTS


class BrokerError(RuntimeError):
    pass


async def ensure_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=f"{settings.topic_prefix}.{spec.name}",
                num_partitions=spec.partitions or settings.partitions,
                replication_factor=settings.replication_factor,
            )
            for spec in ALL
            if f"{settings.topic_prefix}.{spec.name}" not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another process won the race: fine
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from None
    finally:
        await admin.close()


class ImportPublisher:
    """Publishes ImportRequested events, keyed by user (see topics.IMPORTS)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = f"{settings.topic_prefix}.{IMPORTS.name}"
        self.producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> "ImportPublisher":
        await ensure_topics(self.settings)
        # Tansu has no idempotent producer (InitProducerId fails).
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap, enable_idempotence=False, acks="all",
            max_request_size=self.settings.max_event_bytes,
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()  # a producer that failed to start still holds its client
            raise BrokerError(f"cannot reach Kafka at {self.settings.kafka_bootstrap}: {exc}") from None
        self.producer = producer
        return self

    async def __aexit__(self, *exc) -> None:
        await self.producer.stop()

    async def publish(self, event: ImportRequested) -> None:
        # send_and_wait: the event is on the broker before we report "queued".
        await self.producer.send_and_wait(self.topic, key=event.user_id.encode(), value=event.dumps())


async def broker_reachable(settings: Settings) -> bool:
    """One metadata round trip to the broker, on a connection of its own."""
    client = AIOKafkaClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout=10)
        return True
    except (KafkaError, OSError, asyncio.TimeoutError):
        return False
    finally:
        await client.close()


async def watch_broker(settings: Settings) -> str:
    """Return a sentence once a long-lived worker should exit and be restarted.

    That is when the broker has been unreachable for settings.broker_timeout_s,
    or when it answers again after an outage: faust's consumers do not reliably
    resume after a broker restart, and a fresh process does (its state is in
    Postgres, its offsets on the broker).
    """
    interval = min(5.0, settings.broker_timeout_s / 3)
    lost_since: float | None = None
    while True:
        reachable = await broker_reachable(settings)
        now = time.monotonic()
        if reachable and lost_since is not None:
            return f"the broker at {settings.kafka_bootstrap} came back after an outage; exiting to reconnect"
        if not reachable:
            lost_since = lost_since if lost_since is not None else now
            if now - lost_since >= settings.broker_timeout_s:
                return (f"lost the broker at {settings.kafka_bootstrap} for "
                        f"{settings.broker_timeout_s:.0f}s (SOULPRINT_BROKER_TIMEOUT)")
        await asyncio.sleep(interval)
