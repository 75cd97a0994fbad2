"""The one place where the app is assembled: settings + services + topics + agents.

``Runtime`` owns what a worker process talks to (Postgres, the broker through
faust); ``build_app`` wires the agents. The CLI, the long-running worker and
the integration tests all go through here, whatever the infrastructure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator

import faust

from soulprint.settings import EmbeddingConfig, Settings
from soulprint.agents import (chunker, consolidate, embed, facts, ingest, memory, notify, query_view, quick,
                              reconciler, sections)
from soulprint.services.auth import Authenticator
from soulprint.services.embeddings import Embedder, build_embedder
from soulprint.services.llm import AdaptiveLimiter, LLMClient, build_llm_client
from soulprint.services.db import Database
from soulprint.services.erasure import Erasure
from soulprint.services.imports import ImportService
from soulprint.services.storage import Storage, build_storage
from soulprint.services.deadletters import DeadLetters
from soulprint.services.query import QueryService
from soulprint.topics import Topics
from soulprint.topics.stages import Lane, stage

if TYPE_CHECKING:
    from starlette.applications import Starlette


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
class LaneApp:
    """One consumer group: a faust app with its own conductor, and its topic objects."""

    name: str
    app: faust.App
    topics: Topics


@dataclass
class Runtime:
    settings: Settings
    db: Database
    # One faust app (consumer group) per lane of the stage table
    # (topics/stages.py): a stage a person waits on never shares a conductor
    # with bulk work, whose full queue would hold its messages back.
    lanes: dict[Lane, LaneApp]
    llm: LLMClient  # the full pass's client: bulk work under the provider's shared limit
    quick_llm: LLMClient  # the quick pass's own lane: never queued behind bulk requests
    embedder: Embedder  # the embedding stage's provider: its space is the current one
    auth: Authenticator  # bearer tokens to principals, for the query service's every entry point
    storage: Storage | None = None  # uploaded exports, where ingest reads what ImportRequested.source_uri names
    dead_letters: DeadLetters | None = None  # the dead-letter topic, written through the bulk lane's producer
    parsing: LocalActivity = field(default_factory=LocalActivity)
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}")

    @property
    def app(self) -> faust.App:
        """The bulk lane's app: timers and anything that is no stage's consumer."""
        return self.lanes[Lane.BULK].app

    @property
    def topics(self) -> Topics:
        return self.lanes[Lane.BULK].topics

    def lane(self, state: str) -> LaneApp:
        """The lane whose app runs the stage working in ``state``."""
        return self.lanes[stage(state).lane]

    def source(self, state: str) -> tuple[faust.App, faust.TopicT, Topics]:
        """What the agent of the stage in ``state`` consumes: its lane's app, the
        stage's trigger topic, and that lane's topics to send on."""
        lane = self.lane(state)
        return lane.app, getattr(lane.topics, stage(state).topic.name), lane.topics

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger("soulprint")

    async def start(self) -> None:
        """Join every consumer group (in parallel: each join waits on the broker)."""
        await asyncio.gather(*(lane.app.start() for lane in self.lanes.values()))

    async def stop(self) -> None:
        # The bulk lane (the reconciler's timer) last.
        for lane in sorted(self.lanes.values(), key=lambda lane: lane.name == Lane.BULK):
            try:
                await lane.app.stop()
            except Exception:  # noqa: BLE001 - shutting down anyway
                logging.getLogger("soulprint").debug("faust stop failed", exc_info=True)
        await self.embedder.close()


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


def faust_sender(app: faust.App):
    """send(topic, key, value, headers) through the app's own producer (started and stopped with it)."""
    async def send(topic: str, key: bytes | None, value: bytes | None, headers) -> None:
        await app.producer.send_and_wait(topic, key, value, None, None, headers or None)

    return send


def build_configured_embedder(config: EmbeddingConfig) -> Embedder:
    """The embedder the settings name (EmbeddingError if it cannot start: no silent fallback)."""
    bedrock = {k: v for k, v in (("model", config.bedrock_model), ("endpoint_url", config.bedrock_endpoint_url),
                                 ("region", config.bedrock_region)) if v}
    options = {
        "local": {"model": config.model},
        "hash": {"dimensions": config.dimensions or 256},
        "bedrock-titan": bedrock | {"dimensions": config.dimensions or 1024},
        "bedrock-cohere": bedrock,
    }[config.provider]
    return build_embedder(config.provider, **options)


async def build_runtime(settings: Settings) -> Runtime:
    db = await Database.connect(settings.database_url)
    lanes = {}
    for name in Lane:
        # The bulk lane keeps the app id itself as its consumer group; every other is <app id>-<lane>.
        app = make_faust_app(settings, suffix="" if name is Lane.BULK else f"-{name.value}")
        lanes[name] = LaneApp(name, app, Topics(app, settings.topic_prefix, settings.partitions))
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
    rt = Runtime(settings=settings, db=db, lanes=lanes, llm=llm, quick_llm=quick_llm,
                 embedder=build_configured_embedder(settings.embedding),
                 auth=Authenticator(db.tokens, settings.service.admin_token), storage=build_storage(settings))
    rt.dead_letters = DeadLetters(settings, db.dead_letters, faust_sender(rt.app))
    # The pipeline, in the order events flow through it; then the query service's view of it, and webhooks.
    for stage in (ingest, chunker, quick, facts, embed, consolidate, memory, sections, reconciler, query_view,
                  notify):
        stage.register(rt)
    return rt


def build_query_service(rt: Runtime) -> QueryService:
    """The query service on the runtime's database and embedder (the current space), with an LLM
    client of its own: a person waiting for an answer never queues behind the passes' requests.
    No usage sink, as for standalone_query_service: an answer reports its own usage."""
    settings = rt.settings
    llm = build_llm_client(settings.llm, cache=rt.db.llm_cache(),
                           limiter=AdaptiveLimiter(settings.quick_llm_concurrency,
                                                   settings.quick_llm_max_concurrency, name="query"))
    return QueryService(rt.db, rt.embedder, llm, settings.service)


@contextlib.asynccontextmanager
async def standalone_query_service(settings: Settings) -> AsyncIterator[QueryService]:
    """The query service without a worker, for one command (`soulprint ask`, `soulprint mcp`): its own
    pool, embedder and LLM client, closed on exit. EmbeddingError if the embedder cannot start.

    No usage sink: llm_usage rows belong to import jobs; an answer reports its own usage."""
    async with contextlib.AsyncExitStack() as opened:
        embedder = build_configured_embedder(settings.embedding)
        opened.push_async_callback(embedder.close)
        db = await Database.connect(settings.database_url)
        opened.push_async_callback(db.close)
        llm = build_llm_client(settings.llm, cache=db.llm_cache())
        opened.push_async_callback(llm.aclose)
        yield QueryService(db, embedder, llm, settings.service)


def build_api(rt: Runtime, query: QueryService | None) -> "Starlette":
    """The HTTP app (REST, OpenAI-compatible chat, MCP at /mcp, /health, uploads, people, metrics, the
    web app) over ``query`` (None: the upload service alone).

    Imported here: only the serving commands load the web and MCP stacks."""
    from soulprint.services.http import imports, metrics, people, tus, web
    from soulprint.services.http.health import Health
    from soulprint.services.http.mcp import build_mcp

    health = Health(rt.settings, rt.db, rt.embedder, query.llm if query is not None else None)
    ctx = api_context(rt.settings, rt.db, rt.auth, health, rt.storage, query)
    return http_app(ctx, (imports, tus, people, metrics, web), build_mcp(query, rt.auth) if query is not None else None)


def worker_api(rt: Runtime) -> "Starlette":
    """A worker's own HTTP app (`soulprint worker --metrics-port`): /health and /metrics, nothing of
    any person's; /metrics takes the operator token as in `serve`."""
    from soulprint.services.http import metrics
    from soulprint.services.http.health import Health

    health = Health(rt.settings, rt.db, rt.embedder, rt.llm)
    return http_app(api_context(rt.settings, rt.db, rt.auth, health, rt.storage, None), (metrics,))


def api_context(settings: Settings, db: Database, auth: Authenticator, health, storage: Storage,
                query: QueryService | None):
    """What the route modules are built from (services/http/context.py), for `serve` and the upload service."""
    from soulprint.services.http.context import ApiContext

    return ApiContext(settings=settings, db=db, auth=auth, health=health, query=query,
                      imports=ImportService(settings, db, storage), erasure=build_erasure(settings, db, storage))


def build_erasure(settings: Settings, db: Database, storage: Storage | None) -> Erasure:
    """Erasure over the stack's rows, stored exports and unfinished uploads' part files (HTTP and CLI)."""
    from soulprint.services.http.tus import ResumableUploads

    return Erasure(db, storage, ResumableUploads(db, settings))


def http_app(ctx, modules, mcp=None) -> "Starlette":
    """The one ASGI app over ``ctx``: the query routes (when ``ctx.query``), each module's routes, MCP."""
    from soulprint.services.http.app import build_app

    extra = [route for module in modules for route in module.routes(ctx)]
    return build_app(ctx.query, ctx.auth, ctx.settings.service, mcp, health=ctx.health, extra=extra,
                     resources=[ctx.imports])


@contextlib.asynccontextmanager
async def upload_service_api(settings: Settings) -> AsyncIterator["Starlette"]:
    """The upload service alone (`soulprint upload-service`): /health, the upload and resumable-upload
    routes over a pool of its own; no workers, no embedder, no LLM. It publishes to the settings' broker."""
    from soulprint.services.http import imports, tus
    from soulprint.services.http.health import Health

    db = await Database.connect(settings.database_url)
    try:
        ctx = api_context(settings, db, Authenticator(db.tokens, settings.service.admin_token),
                          Health(settings, db, None, None), build_storage(settings), None)
        yield http_app(ctx, (imports, tus))
    finally:
        await db.close()
