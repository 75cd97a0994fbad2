"""The dead-letter topic: write a message a stage set aside, read them back, replay them.

A dead letter is the original record (key, value and headers, byte for byte)
on the ``deadletter`` topic, with these headers added (the names Kafka
Connect uses, plus two of ours), every value UTF-8 text:

    __connect.errors.topic                  the source topic (full name, with the prefix)
    __connect.errors.partition              its partition
    __connect.errors.offset                 its offset
    __connect.errors.exception.class.name   the exception's class, module-qualified
    __connect.errors.exception.message      one line of it (models.text.one_line, at most 500 characters)
    __connect.errors.stage                  the stage that failed (ingest, chunker, consolidation, ...)
    __connect.errors.attempts               how many times the stage tried it (transient errors are retried)

The error message is the exception's own text on one line: stages never put
a person's text or a credential in an exception message, and the logs'
redaction is not relied on here. Each letter has an id (``Letter.id``: a hash
of the stage and the source record), so a redelivered poison message is one
letter, not two; Postgres (``dead_letters``, services/db/deadletters.py)
records it, counts it on its job until it is replayed, and remembers the
replay so ``replay_all`` never sends a letter twice.

For other stages that give up on a record (webhook deliveries, for one):

    letter = Letter.of(stage="notify", topic=<source topic>, partition=p, offset=o, key=k, value=v,
                       headers=h, error=exc, attempts=n, job_id=..., user_id=...)
    await rt.dead_letters.send(letter, blocks_job=False)

``blocks_job=False`` records the letter without holding its job (a webhook
failing is no reason for an import not to complete). Anything not in a worker
builds ``DeadLetters(settings, db.dead_letters, KafkaSender(settings))``.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from soulprint.models.text import one_line
from soulprint.services.db.deadletters import DeadLetterRows, LetterRow
from soulprint.services.metrics import METRICS
from soulprint.settings import Settings
from soulprint.topics import DEAD_LETTERS

PREFIX = "__connect.errors."
TOPIC, PARTITION, OFFSET = PREFIX + "topic", PREFIX + "partition", PREFIX + "offset"
CLASS, MESSAGE = PREFIX + "exception.class.name", PREFIX + "exception.message"
STAGE, ATTEMPTS = PREFIX + "stage", PREFIX + "attempts"
MESSAGE_CHARS = 500

Headers = list[tuple[str, bytes]]
# send(topic, key, value, headers): a producer that waits for the broker's ack.
Send = Callable[[str, bytes | None, bytes | None, Headers], Awaitable[object]]


class DeadLetterError(RuntimeError):
    """A dead letter that cannot be found or replayed; the message is one line for the operator."""


@dataclass(frozen=True)
class Letter:
    stage: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)  # the original record's, without any __connect.errors.*
    error_class: str = ""
    error_message: str = ""
    attempts: int = 1
    job_id: str | None = None
    user_id: str | None = None

    @classmethod
    def of(cls, *, stage: str, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
           headers: Iterable[tuple[str, bytes]] | None, error: BaseException, attempts: int,
           job_id: str | None = None, user_id: str | None = None) -> "Letter":
        kind = type(error)
        return cls(stage=stage, topic=topic, partition=partition, offset=offset, key=key, value=value,
                   headers=original_headers(headers or []), error_class=f"{kind.__module__}.{kind.__qualname__}",
                   error_message=one_line(error, MESSAGE_CHARS), attempts=attempts, job_id=job_id, user_id=user_id)

    @property
    def id(self) -> str:
        """Deterministic: the same source record failing in the same stage is the same letter."""
        h = hashlib.sha256()
        for part in (self.stage, self.topic, str(self.partition), str(self.offset)):
            h.update(part.encode() + b"\0")
        for part in (self.key, self.value):
            h.update(b"-" if part is None else b"+" + hashlib.sha256(part).digest())
        return h.hexdigest()[:20]

    def record_headers(self) -> Headers:
        return [*self.headers, (TOPIC, self.topic.encode()), (PARTITION, str(self.partition).encode()),
                (OFFSET, str(self.offset).encode()), (CLASS, self.error_class.encode()),
                (MESSAGE, self.error_message.encode()), (STAGE, self.stage.encode()),
                (ATTEMPTS, str(self.attempts).encode())]

    @classmethod
    def from_record(cls, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> "Letter":
        """A record read back from the dead-letter topic."""
        errors = {k: v.decode("utf-8", "replace") for k, v in headers if k.startswith(PREFIX)}
        return cls(stage=errors.get(STAGE, "?"), topic=errors.get(TOPIC, ""),
                   partition=int(errors.get(PARTITION, -1)), offset=int(errors.get(OFFSET, -1)),
                   key=key, value=value, headers=original_headers(headers),
                   error_class=errors.get(CLASS, ""), error_message=errors.get(MESSAGE, ""),
                   attempts=int(errors.get(ATTEMPTS, 1)))


def original_headers(headers: Iterable[tuple[str, bytes]]) -> Headers:
    """The headers as they were before any dead-lettering (a replayed letter that fails again
    carries its first letter's error headers no more)."""
    return [(k, bytes(v)) for k, v in headers if not k.startswith(PREFIX)]


def topic_name(settings: Settings, name: str) -> str:
    return f"{settings.topic_prefix}.{name}"


class KafkaSender:
    """An aiokafka producer for commands outside a worker (the CLI): ``async with KafkaSender(s) as send``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> Send:
        from soulprint.services.kafka import BrokerError, ensure_topics

        await ensure_topics(self.settings)
        # Tansu has no idempotent producer (InitProducerId fails).
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, enable_idempotence=False,
                                    acks="all", max_request_size=self.settings.max_event_bytes)
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise BrokerError(f"cannot reach Kafka at {self.settings.kafka_bootstrap}: {exc}") from None
        self.producer = producer
        return self.send

    async def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> object:
        return await self.producer.send_and_wait(topic, key=key, value=value, headers=headers or None)

    async def __aexit__(self, *exc) -> None:
        await self.producer.stop()


@dataclass(frozen=True)
class Record:
    """One record read from a topic, as the broker holds it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers


async def read_topic(settings: Settings, topic: str, *, start: dict[int, int] | None = None) -> list[Record]:
    """Every record of ``topic`` from ``start`` (partition -> offset; default: the first the broker
    holds) up to its end as of now, without a consumer group (nothing is committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=settings.max_event_bytes,
                                fetch_max_bytes=settings.max_event_bytes)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:  # the metadata may not have it yet
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        firsts = await consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(firsts[tp], (start or {}).get(tp.partition, firsts[tp])))
        out: list[Record] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(*tps, timeout_ms=1000)
            for tp, messages in batch.items():
                out.extend(Record(m.topic, m.partition, m.offset, m.key, m.value, list(m.headers or []))
                           for m in messages if m.offset < ends[tp])
        return out
    finally:
        await consumer.stop()


class DeadLetters:
    """Send, list and replay dead letters: the topic holds the records, Postgres their bookkeeping."""

    def __init__(self, settings: Settings, rows: DeadLetterRows, send: Send) -> None:
        self.settings = settings
        self.rows = rows
        self._send = send
        self.topic = topic_name(settings, DEAD_LETTERS.name)

    async def send(self, letter: Letter, *, blocks_job: bool = True) -> str:
        """Put ``letter`` on the dead-letter topic, then record it (counted on its job when it blocks
        it). Returns its id. Raises if the broker or Postgres cannot take it: the caller logs that."""
        await self._send(self.topic, letter.key, letter.value, letter.record_headers())
        new = await self.rows.record(
            letter_id=letter.id, user_id=letter.user_id, job_id=letter.job_id, stage=letter.stage,
            topic=letter.topic, partition=letter.partition, offset=letter.offset, error_class=letter.error_class,
            error_message=letter.error_message, attempts=letter.attempts, blocks_job=blocks_job)
        if new:
            METRICS.dead_letters.labels(letter.stage, letter.error_class.rsplit(".", 1)[-1]).inc()
        return letter.id

    async def on_broker(self) -> dict[str, Letter]:
        """The letters the dead-letter topic holds, by id (the embedded broker forgets them when its
        process ends; Postgres still lists them)."""
        records = await read_topic(self.settings, self.topic)
        return {letter.id: letter for letter in (Letter.from_record(r.key, r.value, r.headers) for r in records)}

    async def list(self) -> list[dict]:
        """Every recorded letter, with whether its record is still on the broker."""
        held = await self.on_broker()
        return [row.to_json() | {"on_broker": row.letter_id in held} for row in await self.rows.all()]

    async def replay(self, letter_id: str | None = None) -> list[str]:
        """Send one letter (by id, even if replayed before) or every letter not replayed yet back to
        its source topic with its original key, value and headers; returns the ids sent."""
        held = await self.on_broker()
        if letter_id is not None:
            row = await self.rows.get(letter_id)
            if row is None:
                raise DeadLetterError(f"no such dead letter: {letter_id}")
            if letter_id not in held:
                raise DeadLetterError(f"dead letter {letter_id} is no longer on the broker (an embedded broker "
                                      "keeps messages only while its process runs)")
            chosen = [held[letter_id]]
        else:
            done = await self.rows.replayed(list(held))
            chosen = [letter for lid, letter in held.items() if lid not in done]
        sent = []
        for letter in chosen:
            await self._send(letter.topic, letter.key, letter.value, letter.headers)
            await self.rows.mark_replayed(letter.id)
            sent.append(letter.id)
        return sent


async def backoff(attempt: int, base_s: float) -> None:
    """Exponential back-off before retry ``attempt`` (1-based): base, 2*base, 4*base, ..."""
    await asyncio.sleep(base_s * (2 ** (attempt - 1)))
