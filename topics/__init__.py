"""Every topic, declared once: name, partitions, key and value, and why it is keyed so.

The specs are plain data; ``Topics.declare`` turns them into faust topics on
a given app, so the CLI, the worker and the tests share one declaration.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from soulprint.models import events


@dataclass(frozen=True)
class TopicSpec:
    name: str  # suffix after the configured prefix
    value_type: type
    key: str  # what the key is, in words
    why: str  # why that key: ordering and fan-out
    partitions: int | None = None  # None: the configured default
    # Several event classes share the topic: faust must rebuild each from the
    # "__faust.ns" field it writes, which it only does with no fixed value type.
    polymorphic: bool = False


IMPORTS = TopicSpec(
    "imports",
    events.ImportRequested,
    key="user_id",
    why=(
        "One person's imports stay in order on one partition, so a re-import can never "
        "overtake the export before it; different people spread over partitions and workers."
    ),
)

CONVERSATIONS = TopicSpec(
    "conversations",
    events.ConversationsEvent,
    key="user_id:conversation_id (IngestCompleted: job_id)",
    polymorphic=True,
    why=(
        "Keyed per conversation so one large export fans out over every partition and every "
        "worker's chunker; a redelivered conversation lands on the same partition as before. "
        "No stage relies on order across conversations: completion is counted in Postgres."
    ),
)

CHUNKS = TopicSpec(
    "chunks",
    events.ChunksEvent,
    key="user_id:conversation_id (SmallConversationsReady: job_id)",
    polymorphic=True,
    why=(
        "Same key as conversations: one job's chunks spread over every partition, so one large "
        "import keeps every worker's facts agent busy; a conversation's chunks stay together. "
        "The job's small conversations are packed by one event for the whole job, keyed by job."
    ),
)

FACTS = TopicSpec(
    "facts",
    events.FactsExtracted,
    key="job_id",
    why=(
        "Consolidation needs all of one job's facts at once: keyed by job so every trigger "
        "for a job meets the same consumer; the start itself is a state transition in Postgres."
    ),
)

CONSOLIDATED = TopicSpec(
    "consolidated",
    events.FactsConsolidated,
    key="job_id",
    why="One MEMORY per job: keyed by job, the memory stage for a job runs in one place, in order.",
)

MEMORY = TopicSpec(
    "memory",
    events.MemoryWritten,
    key="job_id",
    why="One v2 rewrite per job, after its MEMORY: keyed by job for the same reason.",
)

QUICK = TopicSpec(
    "quick",
    events.QuickPassRequested,
    key="user_id",
    why=(
        "Its own topic and agent, so a person's quick pass never queues behind anyone's "
        "full-pass work; keyed by user so one person's quick passes stay in order."
    ),
)

SECTIONS = TopicSpec(
    "sections",
    events.SectionsPublished,
    key="user_id",
    why="Versions of one person's soulprint stay in order (v1 before v2) for the query service.",
)

DEAD_LETTERS = TopicSpec(
    "deadletter",
    events.Event,
    key="the source record's own key (its value and headers are the source record's too)",
    why=("Poison messages set aside, byte for byte, with __connect.errors.* headers naming their source and "
         "reason (services/deadletters.py); never consumed automatically, replayed by `soulprint dlq replay`."),
    partitions=1,
    polymorphic=True,  # any event of any topic
)

NOTICES = TopicSpec(
    "notices",
    events.JobNotice,
    key="user_id",
    why=(
        "What people's webhooks are told (the relay publishes the notices outbox): keyed by user so one "
        "person's notices (quick_ready, complete, deleted) reach the webhook agent in the order they happened."
    ),
)

ALL = (IMPORTS, CONVERSATIONS, CHUNKS, FACTS, CONSOLIDATED, MEMORY, QUICK, SECTIONS, DEAD_LETTERS, NOTICES)


class Topics:
    """The faust topic objects for one app."""

    def __init__(self, app: faust.App, prefix: str, partitions: int) -> None:
        def declare(spec: TopicSpec) -> faust.TopicT:
            return app.topic(
                f"{prefix}.{spec.name}",
                key_type=str,
                value_type=None if spec.polymorphic else spec.value_type,
                value_serializer="json",
                partitions=spec.partitions or partitions,
                key_serializer="raw",
                # faust creates only "internal" topics, with the partitions
                # above; others would get the broker's default on first use.
                internal=True,
            )

        self.imports = declare(IMPORTS)
        self.conversations = declare(CONVERSATIONS)
        self.chunks = declare(CHUNKS)
        self.facts = declare(FACTS)
        self.consolidated = declare(CONSOLIDATED)
        self.memory = declare(MEMORY)
        self.quick = declare(QUICK)
        self.sections = declare(SECTIONS)
        self.dead_letters = declare(DEAD_LETTERS)
        self.notices = declare(NOTICES)


def conversation_key(user_id: str, conversation_id: str) -> str:
    return f"{user_id}:{conversation_id}"
