"""A real webhook receiver on a free local port: verifies every request with the `standardwebhooks` package.

    async with WebhookReceiver() as hook:
        endpoint = await db.webhooks.add(hook.url, secret, None)
        hook.secret = endpoint.secret
        hook.script = lambda msg_id, seen: (500, {}) if seen <= 3 else (200, {})

Every request is recorded (its webhook-id, headers, body, whether its signature
verified, what was answered). ``script(msg_id, seen)`` decides the answer,
``seen`` being how many requests with this webhook-id arrived so far
(this one included); the default answers 200.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Received:
    msg_id: str
    headers: dict
    body: str
    verified: bool
    answered: int

    @property
    def event(self) -> dict:
        return json.loads(self.body)


class WebhookReceiver:
    def __init__(self) -> None:
        self.secret: str | None = None
        self.script: Callable[[str, int], tuple[int, dict]] = lambda msg_id, seen: (200, {})
        self.received: list[Received] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        headers = {k.lower(): v for k, v in request.headers.items()}
        msg_id = headers.get("webhook-id", "")
        try:
            Webhook(self.secret).verify(body, headers)
            verified = True
        except (WebhookVerificationError, TypeError, ValueError):
            verified = False
        seen = 1 + sum(r.msg_id == msg_id for r in self.received)
        status, extra = self.script(msg_id, seen) if verified else (401, {})
        self.received.append(Received(msg_id, headers, body, verified, status))
        return web.Response(status=status, headers=extra)

    def accepted(self) -> dict[str, Received]:
        """What a receiver that dedupes on webhook-id keeps: the first 2xx request of each id."""
        out: dict[str, Received] = {}
        for r in self.received:
            if 200 <= r.answered < 300:
                out.setdefault(r.msg_id, r)
        return out

    def accepted_types(self, job_id: str | None = None) -> list[str]:
        return sorted(r.event["type"] for r in self.accepted().values()
                      if job_id is None or r.event["data"].get("job_id") == job_id)

    async def __aenter__(self) -> "WebhookReceiver":
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()
