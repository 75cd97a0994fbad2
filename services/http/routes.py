"""The REST and OpenAI-compatible routes: authenticate, read the request, ask the query service, answer JSON.

The person is always the token's: ``principal.acting_for(requested)`` lets a
person's token name only its own person (another -> 403) and requires the
operator token to name one. Every route authenticates before it reads the
body, so a stranger learns nothing from validation errors.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from soulprint.models.access import Principal
from soulprint.models.query import QueryRequest, SearchRequest
from soulprint.services.http.chat import MODEL_ID, ChatRequest, Completion
from soulprint.services.http.health import Health
from soulprint.services.http.inputs import JSON, authenticate, read_model

if TYPE_CHECKING:
    from soulprint.services.auth import Authenticator
    from soulprint.services.query import QueryService
    from soulprint.settings import ServiceConfig


class SoulprintParams(BaseModel):
    model_config = ConfigDict(extra="ignore")
    user: str | None = None


class FactsParams(SoulprintParams):
    q: str | None = None
    k: int = Field(50, ge=1, le=100)


class Routes:
    def __init__(self, query: "QueryService", auth: "Authenticator", config: "ServiceConfig",
                 health: Health) -> None:
        self.query = query
        self.auth = auth
        self.config = config
        self.probe = health
        self.started = int(time.time())

    async def principal(self, request: Request) -> Principal:
        return await authenticate(request, self.auth)

    async def _read(self, request: Request, model):
        return await read_model(request, model, self.config.max_request_bytes)

    # -- the routes -----------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        report = await self.probe.check()
        return JSON(report, status_code=200 if report["status"] == "ok" else 503)

    async def search(self, request: Request) -> Response:
        principal = await self.principal(request)
        req = await self._read(request, SearchRequest)
        return JSON(await self.query.search(principal.acting_for(req.user), req))

    async def ask(self, request: Request) -> Response:
        principal = await self.principal(request)
        req = await self._read(request, QueryRequest)
        answer = await self.query.ask(principal.acting_for(req.user), req.message, req.history)
        return JSON(answer.to_json())

    async def soulprint(self, request: Request) -> Response:
        principal = await self.principal(request)
        params = SoulprintParams.model_validate(dict(request.query_params))
        view = await self.query.soulprint(principal.acting_for(params.user))
        return JSON(view.to_json())

    async def facts(self, request: Request) -> Response:
        principal = await self.principal(request)
        params = FactsParams.model_validate(dict(request.query_params))
        facts = await self.query.facts(principal.acting_for(params.user), params.q, params.k)
        return JSON({"facts": facts})

    async def chat(self, request: Request) -> Response:
        principal = await self.principal(request)
        req = await self._read(request, ChatRequest)
        # Chat clients may send OpenAI's `user` as their own end-user label:
        # it names the person only for the operator; a person's token is its person.
        person = principal.acting_for(req.user if principal.admin else None)
        question = req.as_query()
        answer = await self.query.ask(person, question.message, question.history)
        completion = Completion(req.model, answer)
        if not req.stream:
            return JSON(completion.completion())
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return StreamingResponse(completion.events(include_usage), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def models(self, request: Request) -> Response:
        await self.principal(request)
        model = {"id": MODEL_ID, "object": "model", "created": self.started, "owned_by": "soulprint"}
        return JSON({"object": "list", "data": [model]})
