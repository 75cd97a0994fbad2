"""GET /metrics: the exposition's names and units, who may scrape, what is counted, and a scrape that never hangs.

Unit tests check the registry itself (every name soulprint_*, histograms in
seconds, no label that could name a person), the LLM and HTTP counting, the
route's access rule and a broker that is down or silent. The integration test
imports the shipped sample on the session's runtime, scrapes over a real socket
and finds the LLM requests, stage events, time to quick_ready and the lanes'
consumer lag, and neither the person's id nor the job's anywhere in the text.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from soulprint.models.llm import LLMResult, Usage
from soulprint.services.auth import Authenticator
from soulprint.services.http import metrics as metrics_route
from soulprint.services.http.app import build_app
from soulprint.services.http.context import ApiContext
from soulprint.services.http.errors import exception_handlers
from soulprint.services.http.metrics import RequestMetrics, consumer_groups, refresh_lag
from soulprint.services.http.server import ApiServer, bind
from soulprint.services.llm.accounting import observe
from soulprint.services.metrics import METRICS, Metrics
from soulprint.settings import load_settings
from soulprint.topics.stages import Lane
from support.tokens import ALICE, TokenTable

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-export.zip"
ADMIN = "operator-token-for-the-metrics-tests-0123456789"
PERSONAL_LABELS = {"user", "user_id", "person", "job", "job_id", "token", "token_id"}


def value(name: str, **labels) -> float:
    return METRICS.registry.get_sample_value(name, labels) or 0.0


def test_every_metric_is_ours_in_base_units_and_names_no_person():
    families = list(METRICS.registry.collect())
    assert families
    for family in families:
        assert family.name.startswith("soulprint_"), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        if family.type == "gauge":
            assert family.name.endswith(("_messages", "_bytes", "_seconds")), family.name
    defined = [m for m in vars(METRICS).values() if isinstance(m, MetricWrapperBase)]
    assert len(defined) == len(families)
    for metric in defined:
        assert not PERSONAL_LABELS & set(metric._labelnames), metric


def test_the_exposition_is_prometheus_text_with_counters_as_totals():
    METRICS.stage_events.labels("parsing", "ok").inc(0)
    text = generate_latest(METRICS.registry).decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "soulprint_stage_events" in names  # the parser strips _total
    assert "soulprint_stage_events_total{" in text
    assert "# TYPE soulprint_stage_duration_seconds histogram" in text


def test_llm_results_are_counted_by_model_and_outcome():
    task = "metrics-test"
    paid = LLMResult(ok=True, model="claude-x", usage=Usage(requests=1, input_tokens=100, output_tokens=20,
                                                             cache_read_input_tokens=5, cost_usd=0.25))
    cached = LLMResult(ok=True, model="claude-x", cached=True, usage=Usage(cache_hits=1))
    failed = LLMResult(ok=False, model="claude-x", error="429", error_kind="rate_limited")
    before = {k: value("soulprint_llm_requests_total", model="claude-x", task=task, outcome=k)
              for k in ("paid", "cached", "error")}
    tokens = value("soulprint_llm_tokens_total", model="claude-x", kind="input")
    cost = value("soulprint_llm_cost_dollars_total", model="claude-x")
    errors = value("soulprint_llm_errors_total", model="claude-x", error="rate_limited")
    for result in (paid, cached, failed):
        observe(task, result)
    for outcome in ("paid", "cached", "error"):
        assert value("soulprint_llm_requests_total", model="claude-x", task=task, outcome=outcome) == \
            before[outcome] + 1
    assert value("soulprint_llm_tokens_total", model="claude-x", kind="input") == tokens + 100
    assert value("soulprint_llm_cost_dollars_total", model="claude-x") == pytest.approx(cost + 0.25)
    assert value("soulprint_llm_errors_total", model="claude-x", error="rate_limited") == errors + 1


async def serve(app) -> ApiServer:
    server = ApiServer(app, bind("127.0.0.1", 0))
    await server.start()
    return server


async def test_http_requests_are_counted_by_route_template_never_by_path():
    async def thing(request):
        return PlainTextResponse(request.path_params["thing_id"])

    app = Starlette(routes=[Route("/v1/things/{thing_id}", thing)], middleware=[Middleware(RequestMetrics)],
                    exception_handlers=exception_handlers())
    server = await serve(app)
    ok = value("soulprint_http_requests_total", route="/v1/things/{thing_id}", status="200")
    missing = value("soulprint_http_requests_total", route="unmatched", status="404")
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/v1/things/f00d-1234")).status_code == 200
            assert (await client.get("/nowhere/f00d-5678")).status_code == 404
    finally:
        await server.stop()
    assert value("soulprint_http_requests_total", route="/v1/things/{thing_id}", status="200") == ok + 1
    assert value("soulprint_http_requests_total", route="unmatched", status="404") == missing + 1
    assert "f00d" not in generate_latest(METRICS.registry).decode()


def _context(public: bool) -> ApiContext:
    settings = load_settings({})
    settings = dataclasses.replace(settings, service=dataclasses.replace(settings.service, metrics_public=public))
    return ApiContext(settings=settings, db=None, auth=Authenticator(TokenTable(), ADMIN), health=None)


@pytest.mark.parametrize("public", [False, True])
async def test_who_may_scrape(public):
    ctx = _context(public)
    server = await serve(Starlette(routes=metrics_route.routes(ctx), exception_handlers=exception_handlers()))
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            anonymous = await client.get("/metrics")
            person = await client.get("/metrics", headers={"Authorization": f"Bearer {ALICE}"})
            operator = await client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN}"})
    finally:
        await server.stop()
    assert operator.status_code == 200
    assert operator.headers["content-type"] == CONTENT_TYPE_LATEST
    assert "soulprint_stage_events_total" in operator.text
    if public:
        assert anonymous.status_code == person.status_code == 200
    else:
        assert anonymous.status_code == 401 and person.status_code == 403
        assert "operator" in person.json()["error"]["message"]


def test_the_groups_are_every_lanes():
    expected = {"sp"} | {f"sp-{lane.value}" for lane in Lane if lane is not Lane.BULK}
    assert set(consumer_groups("sp")) == expected


async def test_a_broker_that_is_down_leaves_the_lag_out_and_counts_an_error():
    metrics = Metrics(CollectorRegistry())
    metrics.consumer_lag.labels(group="sp", topic="sp.imports").set(5)  # an older scrape's reading
    closed = bind("127.0.0.1", 0)
    port = closed.getsockname()[1]
    closed.close()
    await refresh_lag(metrics, f"127.0.0.1:{port}", "sp", "sp")
    assert metrics.registry.get_sample_value("soulprint_metrics_scrape_errors_total", {"source": "consumer_lag"}) == 1
    assert "soulprint_consumer_lag_messages{" not in generate_latest(metrics.registry).decode()


async def test_a_broker_that_never_answers_cannot_hang_a_scrape(monkeypatch):
    """A listener that accepts and says nothing: the reading is bounded by LAG_TIMEOUT_S."""
    monkeypatch.setattr(metrics_route, "LAG_TIMEOUT_S", 0.5)
    silent = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    metrics = Metrics(CollectorRegistry())
    try:
        await asyncio.wait_for(refresh_lag(metrics, f"127.0.0.1:{port}", "sp", "sp"), 30)  # a guard, not a timing
    finally:
        silent.close()
    assert metrics.registry.get_sample_value("soulprint_metrics_scrape_errors_total", {"source": "consumer_lag"}) == 1


@pytest.mark.integration
async def test_a_scrape_after_an_import_shows_the_pipeline_and_no_person(runtime, user_id):
    from soulprint.runtime import build_query_service
    from soulprint.services.http.health import Health
    from support.pipeline import import_and_wait
    from support.waiting import wait_until

    query = build_query_service(runtime)
    auth = Authenticator(runtime.db.tokens, ADMIN)
    ctx = ApiContext(settings=runtime.settings, db=runtime.db, auth=auth,
                     health=Health(runtime.settings, runtime.db, runtime.embedder, query.llm))
    server = await serve(build_app(query, auth, runtime.settings.service, health=ctx.health,
                                   extra=metrics_route.routes(ctx)))
    try:
        job = await import_and_wait(runtime, user_id, SAMPLE)
        assert job.status == "complete", job.error
        app_id = runtime.settings.app_id
        # The lanes that carried this import's events (the sample is too small for a full pass).
        groups = {app_id, f"{app_id}-{Lane.INGEST.value}", f"{app_id}-{Lane.QUICK.value}",
                  f"{app_id}-{Lane.EMBED.value}"}

        async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN}"},
                                     timeout=60) as client:
            async def scrape() -> dict:
                response = await client.get("/metrics")
                assert response.status_code == 200
                return {"text": response.text, "families": {
                    f.name: f for f in text_string_to_metric_families(response.text)}}

            def lagging_groups(s: dict) -> set[str]:
                lag = s["families"].get("soulprint_consumer_lag_messages")
                return {sample.labels["group"] for sample in lag.samples} if lag else set()

            # faust commits its offsets every few seconds: wait for the lanes' commits to show.
            scraped = await wait_until(scrape, lambda s: groups <= lagging_groups(s), limit_s=90,
                                       what="consumer lag of the import's lanes")
    finally:
        await server.stop()
    families, text = scraped["families"], scraped["text"]
    lag = families["soulprint_consumer_lag_messages"]
    assert all(sample.value >= 0 and sample.labels["topic"].startswith(runtime.settings.topic_prefix + ".")
               for sample in lag.samples)
    requests = [s for s in families["soulprint_llm_requests"].samples if s.name.endswith("_total")]
    assert sum(s.value for s in requests if s.labels["task"] == "quick_sections") >= 1
    events = [s for s in families["soulprint_stage_events"].samples if s.name.endswith("_total")]
    stages = {s.labels["stage"] for s in events if s.value > 0}
    assert "ingest" in stages, sorted(stages)
    quick = families["soulprint_time_to_quick_ready_seconds"]
    assert next(s.value for s in quick.samples if s.name.endswith("_count")) >= 1
    complete = families["soulprint_time_to_complete_seconds"]
    assert next(s.value for s in complete.samples if s.name.endswith("_count")) >= 1
    assert next(s.value for s in families["soulprint_embedded_texts"].samples if s.name.endswith("_total")) > 0
    # No label names the person or the job.
    assert user_id not in text and job.job_id not in text


@pytest.mark.integration
async def test_lag_is_end_minus_committed_summed_over_partitions(stack_settings):
    """10 messages over 3 partitions, 4 consumed and committed on one partition: the lag is 6 (the partitions
    not committed on count from their start); a group that never committed has no reading."""
    import uuid

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from soulprint.services.lag import consumer_lag

    bootstrap, prefix = stack_settings.kafka_bootstrap, f"lag{uuid.uuid4().hex[:8]}"
    topic, group = f"{prefix}.things", f"{prefix}-group"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for n in range(10):
            await producer.send_and_wait(topic, b"v", key=str(n).encode(), partition=n % 3)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.commit({TopicPartition(topic, 0): 4})  # partition 0 holds 4 of the 10: all consumed
    finally:
        await consumer.stop()
    assert await consumer_lag(bootstrap, [group, f"{prefix}-idle"], prefix) == {(group, topic): 6}
