"""The one place where the app is assembled: settings + services + topics + agents.

``Runtime`` owns what a worker process talks to (Postgres, the broker through
faust); ``build_app`` wires the agents. The CLI, the long-running worker and
the integration tests all go through here, whatever the infrastructure.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

import faust

from soulprint.settings import Settings
from soulprint.agents import chunker, consolidate, facts, ingest, memory, quick, reconciler, sections
from soulprint.services.llm import AdaptiveLimiter, LLMClient, build_llm_client
from soulprint.services.db import Database
from soulprint.topics import Topics


class LocalActivity:
    """Counts what this process is busy with, so background stages can yield to it.

    Parsing is the start of the latency-critical path (quick_ready waits for
    the end of the parse); in one process the chunker and facts agents compete
    with the parser thread for the GIL. They wait while this process parses;
    the events they would have taken stay in Kafka, and other workers' agents
    are not affected.
    """

    def __init__(self) -> None:
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def __enter__(self) -> "LocalActivity":
        self._busy += 1
        self._idle.clear()
        return self

    def __exit__(self, *exc) -> None:
        self._busy -= 1
        if self._busy == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


@dataclass
class Runtime:
    settings: Settings
    db: Database
    app: faust.App  # the pipeline's stages
    topics: Topics
    # The quick pass runs on an app (consumer group) of its own: faust hands
    # fetched messages to agents through one conductor, so a full stage queue
    # (chunks, conversations) would otherwise hold up someone's quick pass.
    quick_app: faust.App
    quick_topics: Topics
    # Fact extraction too: during a large import the chunker's queue is full
    # for minutes, and chunk events fetched by the same consumer would wait
    # behind thousands of conversations (the LLM idle meanwhile).
    facts_app: faust.App
    facts_topics: Topics
    llm: LLMClient  # the full pass's client: bulk work under the provider's shared limit
    quick_llm: LLMClient  # the quick pass's own lane: never queued behind bulk requests
    parsing: LocalActivity = field(default_factory=LocalActivity)
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}")

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger("soulprint")

    async def start(self) -> None:
        """Join every consumer group (in parallel: each join waits on the broker)."""
        await asyncio.gather(self.app.start(), self.quick_app.start(), self.facts_app.start())

    async def stop(self) -> None:
        for app in (self.quick_app, self.facts_app, self.app):
            try:
                await app.stop()
            except Exception:  # noqa: BLE001 - shutting down anyway
                logging.getLogger("soulprint").debug("faust stop failed", exc_info=True)


def make_faust_app(settings: Settings, suffix: str = "") -> faust.App:
    assert settings.kafka_bootstrap, "broker must be resolved (embedded or external) before the app is built"
    datadir = Path(settings.data_dir) / "faust"
    return faust.App(
        settings.app_id + suffix,
        broker=f"kafka://{settings.kafka_bootstrap}",
        autodiscover=False,
        # Tansu has no transactions or idempotent producer; every write
        # downstream is idempotent instead, so at-least-once is enough.
        processing_guarantee="at_least_once",
        web_enabled=False,
        store="memory://",
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=max(0.3, settings.kafka_session_timeout_s / 3),
        broker_rebalance_timeout=settings.kafka_rebalance_timeout_s,
        # Conversation events carry whole conversations; long ones pass Kafka's 1 MB default.
        producer_max_request_size=settings.max_event_bytes,
        consumer_max_fetch_size=settings.max_event_bytes,
        producer_linger=0.005,
        stream_wait_empty=False,
        # Events carry whole conversations: a small per-stream buffer keeps a
        # stage that is waiting (or slow) from holding thousands in memory.
        stream_buffer_maxsize=settings.stream_buffer,
    )


async def build_runtime(settings: Settings) -> Runtime:
    db = await Database.connect(settings.database_url)
    app = make_faust_app(settings)
    topics = Topics(app, settings.topic_prefix, settings.partitions)
    quick_app = make_faust_app(settings, suffix="-quick")
    quick_topics = Topics(quick_app, settings.topic_prefix, settings.partitions)
    facts_app = make_faust_app(settings, suffix="-facts")
    facts_topics = Topics(facts_app, settings.topic_prefix, settings.partitions)
    config = settings.llm
    sink, cache = db.llm_usage(), db.llm_cache()
    # Only the bulk client may batch (complete_many: fact extraction). A batch
    # cannot outlive the full pass's deadline.
    bulk = replace(config, batch_api=settings.facts_batch_api, batch_poll_s=settings.facts_batch_poll_s,
                   batch_max_wait_s=settings.full_pass_deadline_s)
    llm = build_llm_client(bulk, sink=sink, cache=cache, batch_store=db.llm_batches())
    # A person waiting for their soulprint must not queue behind thousands of
    # extraction requests in the shared limiter: the quick pass has its own.
    quick_llm = build_llm_client(config, sink=sink, cache=cache,
                                 limiter=AdaptiveLimiter(settings.quick_llm_concurrency,
                                                         settings.quick_llm_max_concurrency, name="quick-pass"))
    rt = Runtime(settings=settings, db=db, app=app, topics=topics, quick_app=quick_app,
                 quick_topics=quick_topics, facts_app=facts_app, facts_topics=facts_topics,
                 llm=llm, quick_llm=quick_llm)
    # The pipeline, in the order events flow through it.
    for stage in (ingest, chunker, quick, facts, consolidate, memory, sections, reconciler):
        stage.register(rt)
    return rt
