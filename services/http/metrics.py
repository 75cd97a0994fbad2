"""GET /metrics (Prometheus text format) and the HTTP request metrics every route is counted by.

Who may scrape: the operator token (SOULPRINT_ADMIN_TOKEN), like every other
operator's tool; with SOULPRINT_METRICS_PUBLIC=true anyone who reaches the
port, for a scraper inside the cluster that holds no token. The numbers hold no
person's data either way (no label names a person or a job), but they do say
how busy the service is, so they are not public by default.

Consumer lag is read from the broker at each scrape, bounded by
``LAG_TIMEOUT_S``: a broker that is down or slow leaves the lag out of that
scrape and counts ``soulprint_metrics_scrape_errors_total{source="consumer_lag"}``;
the scrape itself always answers.
"""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from soulprint.models.access import AccessDenied
from soulprint.services.http.inputs import authenticate
from soulprint.services.lag import consumer_lag
from soulprint.services.metrics import METRICS, Metrics
from soulprint.topics.stages import Lane

log = logging.getLogger(__name__)

LAG_TIMEOUT_S = 3.0


def consumer_groups(app_id: str) -> list[str]:
    """Every lane's consumer group: the bulk lane's is the app id itself, the others ``<app id>-<lane>``."""
    return [app_id if lane is Lane.BULK else f"{app_id}-{lane.value}" for lane in Lane]


async def refresh_lag(metrics: Metrics, bootstrap: str | None, app_id: str, topic_prefix: str) -> None:
    """Set the lag gauge from the broker, or leave it empty and count the failure (never raises)."""
    metrics.consumer_lag.clear()
    if not bootstrap:
        return
    try:
        lag = await asyncio.wait_for(consumer_lag(bootstrap, consumer_groups(app_id), topic_prefix), LAG_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - a scrape answers whatever the broker does
        log.warning("consumer lag left out of this scrape: %s", " ".join(str(exc).split()) or type(exc).__name__)
        metrics.scrape_errors.labels(source="consumer_lag").inc()
        return
    for (group, topic), behind in lag.items():
        metrics.consumer_lag.labels(group=group, topic=topic).set(behind)


def routes(ctx) -> list[BaseRoute]:
    settings = ctx.settings
    metrics: Metrics = ctx.metrics or METRICS

    async def scrape(request: Request) -> Response:
        if not settings.service.metrics_public:
            principal = await authenticate(request, ctx.auth)
            if not principal.admin:
                raise AccessDenied("metrics are for the operator token (or set SOULPRINT_METRICS_PUBLIC=true)")
        await refresh_lag(metrics, settings.kafka_bootstrap, settings.app_id, settings.topic_prefix)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", scrape, methods=["GET"])]


class RequestMetrics:
    """ASGI middleware: every HTTP request counted and timed by its route's template (``/v1/imports/{job_id}``,
    never the path itself: ids in a path would make a series per job) and its status."""

    def __init__(self, app, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics or METRICS

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()
        root = scope.get("root_path", "")

        async def sending(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # The router put the matched route in the scope (inside a Mount, the mount's path went to
            # root_path); no match (a 404, a 429 before routing) has none.
            matched = getattr(scope.get("route"), "path", None)
            route = scope.get("root_path", "")[len(root):] + matched if matched else "unmatched"
            self.metrics.http_requests.labels(route=route, status=str(status)).inc()
            self.metrics.http_duration.labels(route=route).observe(time.perf_counter() - started)
