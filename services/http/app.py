"""The query service's one ASGI app: REST under /v1, the OpenAI-compatible chat, MCP at /mcp, /health.

Every request passes two middlewares first: the HTTP metrics (by route
template and status) and the per-token rate limit (services/http/limits.py).

Built by ``runtime.build_api`` from the runtime's parts (or by a test from its
own), served by ``server.ApiServer``. The MCP mount's session manager runs in
this app's lifespan, so it starts and stops with the server.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, AsyncContextManager, Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from soulprint.services.http.errors import exception_handlers
from soulprint.services.http.health import Health
from soulprint.services.http.limits import RateLimit
from soulprint.services.http.metrics import RequestMetrics
from soulprint.services.http.routes import Routes

if TYPE_CHECKING:
    from soulprint.services.auth import Authenticator
    from soulprint.services.http.mcp import McpMount
    from soulprint.services.query import QueryService
    from soulprint.settings import ServiceConfig


def build_app(query: "QueryService | None", auth: "Authenticator", config: "ServiceConfig",
              mcp: "McpMount | None" = None, *, health: Health, extra: Sequence[BaseRoute] = (),
              middleware: Sequence[Middleware] = (), resources: Sequence[AsyncContextManager] = ()) -> Starlette:
    """``extra``: the other route modules' routes (uploads, people, metrics, the web app); ``query`` None
    leaves the query service's routes out (the upload service alone). ``resources``: what the routes hold
    open for the app's life (the import publisher), entered at startup and closed at shutdown."""
    r = Routes(query, auth, config, health)
    query_routes = [
        Route("/health", r.health, methods=["GET"]),
        Route("/v1/search", r.search, methods=["POST"]),
        Route("/v1/query", r.ask, methods=["POST"]),
        Route("/v1/soulprint", r.soulprint, methods=["GET"]),
        Route("/v1/facts", r.facts, methods=["GET"]),
        Route("/v1/chat/completions", r.chat, methods=["POST"]),
        Route("/v1/models", r.models, methods=["GET"]),
    ]
    routes = [Route("/health", r.health, methods=["GET"])]
    if query is not None:
        routes += query_routes[1:]
    routes += list(extra)
    if mcp is not None:
        routes.append(Route("/mcp", mcp.asgi))  # an ASGI app: every method, the transport decides

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with contextlib.AsyncExitStack() as held:
            if mcp is not None:
                await held.enter_async_context(mcp.lifespan())
            for resource in resources:
                await held.enter_async_context(resource)
            yield

    # Outermost first: every request is counted (a 429 too), then charged to its token's bucket.
    guards = [Middleware(RequestMetrics),
              Middleware(RateLimit, auth=auth, per_min=config.rate_limit_per_min, burst=config.rate_limit_burst)]
    return Starlette(routes=routes, exception_handlers=exception_handlers(), lifespan=lifespan,
                     middleware=guards + list(middleware))
