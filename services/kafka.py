"""The Kafka client used outside the faust worker: the upload side publishes import events.

The upload service does not need a stream processor, only a producer; it
also declares the topics so that publishing before any worker has started
still lands on the right number of partitions.
"""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
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
        # Tansu has no idempotent producer (InitProducerId fails).
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, enable_idempotence=False, acks="all"
        )

    async def __aenter__(self) -> "ImportPublisher":
        await ensure_topics(self.settings)
        try:
            await self.producer.start()
        except KafkaError as exc:
            raise BrokerError(f"cannot reach Kafka at {self.settings.kafka_bootstrap}: {exc}") from None
        return self

    async def __aexit__(self, *exc) -> None:
        await self.producer.stop()

    async def publish(self, event: ImportRequested) -> None:
        # send_and_wait: the event is on the broker before we report "queued".
        await self.producer.send_and_wait(self.topic, key=event.user_id.encode(), value=event.dumps())
