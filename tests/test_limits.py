"""Per-token rate limits: token buckets on a fake clock (no sleeps), and the middleware over a real socket.

The middleware is served with uvicorn on a free port in front of a few routes
of its own; the Authenticator is the real one, over an in-memory token table
(support/tokens.py).
"""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from soulprint.services.auth import Authenticator
from soulprint.services.http.limits import RateLimit, TokenBuckets
from soulprint.services.http.server import ApiServer, bind
from support.tokens import ALICE, BOB, TokenTable

ADMIN = "operator-token-for-the-limit-tests-0123456789"
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_gives_its_burst_then_the_rate():
    clock = Clock()
    buckets = TokenBuckets(rate_per_s=2.0, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # one request comes back every half second
    assert buckets.take("b") == 0.0  # another key has its own bucket
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    clock.now += 60  # refilled, never above the burst
    assert [buckets.take("a") for _ in range(4)][-1] > 0


@pytest.fixture
async def limited():
    """(url, clock, token table): 60 a minute with a burst of 2, on a real socket."""
    clock, table = Clock(), TokenTable()

    async def ok(request):
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route(path, ok) for path in ("/v1/thing", "/health", "/metrics")],
                    middleware=[Middleware(RateLimit, auth=Authenticator(table, ADMIN), per_min=60, burst=2,
                                           clock=clock)])
    server = ApiServer(app, bind("127.0.0.1", 0))
    await server.start()
    yield server.url, clock, table
    await server.stop()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def test_over_the_limit_is_429_with_retry_after_and_time_lets_it_in_again(limited):
    url, clock, _ = limited
    async with httpx.AsyncClient(base_url=url) as client:
        assert [(await client.get("/v1/thing", headers=bearer(ALICE))).status_code for _ in range(2)] == [200, 200]
        refused = await client.get("/v1/thing", headers=bearer(ALICE))
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["type"] == "rate_limit_error"
        clock.now += 1.0
        assert (await client.get("/v1/thing", headers=bearer(ALICE))).status_code == 200


async def test_each_token_has_its_own_bucket(limited):
    url, _, table = limited
    async with httpx.AsyncClient(base_url=url) as client:
        for _ in range(3):
            await client.get("/v1/thing", headers=bearer(ALICE))
        assert (await client.get("/v1/thing", headers=bearer(ALICE))).status_code == 429
        assert (await client.get("/v1/thing", headers=bearer(BOB))).status_code == 200
        assert (await client.get("/v1/thing", headers=bearer(ADMIN))).status_code == 200
    # Which bucket a token belongs to is remembered: one lookup per person token, not one per request.
    assert table.lookups == 2


async def test_made_up_tokens_share_their_address_bucket(limited):
    url, _, table = limited
    async with httpx.AsyncClient(base_url=url) as client:
        codes = [(await client.get("/v1/thing", headers=bearer(f"sp_{n:016x}_guess"))).status_code
                 for n in range(5)]
        assert codes[:2] == [200, 200] and set(codes[2:]) == {429}
        assert (await client.get("/v1/thing")).status_code == 429  # the same address without a token
        # A refused address makes no more lookups: guessing is bounded by the address's own rate.
        assert table.lookups == 2
        # A token not looked up yet waits for its address too.
        assert (await client.get("/v1/thing", headers=bearer(BOB))).status_code == 429


async def test_health_and_metrics_are_never_limited(limited):
    url, _, _ = limited
    async with httpx.AsyncClient(base_url=url) as client:
        for _ in range(3):
            await client.get("/v1/thing")
        assert (await client.get("/v1/thing")).status_code == 429
        assert {(await client.get(path)).status_code for path in ["/health", "/metrics"] * 5} == {200}


async def test_zero_turns_the_limit_off():
    async def ok(request):
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/v1/thing", ok)],
                    middleware=[Middleware(RateLimit, auth=Authenticator(TokenTable(), ADMIN), per_min=0, burst=1)])
    server = ApiServer(app, bind("127.0.0.1", 0))
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert {(await client.get("/v1/thing")).status_code for _ in range(10)} == {200}
    finally:
        await server.stop()


async def test_the_operator_token_is_compared_in_constant_time(monkeypatch):
    """hmac.compare_digest decides, for the right token and for one wrong in its last character only."""
    import hmac

    from soulprint.services import auth as auth_module

    compared, real = [], hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", spy)
    auth = Authenticator(TokenTable(), ADMIN)
    assert (await auth.authenticate(ADMIN)).admin
    assert await auth.authenticate(ADMIN[:-1] + "x") is None
    assert len(compared) == 2 and all(b == ADMIN.encode() for _, b in compared)
