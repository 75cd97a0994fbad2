"""Per-token rate limits: a token bucket per principal, in this process's memory, as ASGI middleware.

A request is charged to the bucket of its token: a person token's id, or the
operator's. A request without a valid token (none, unknown, revoked) is
charged to its client address instead, so nobody gets a fresh bucket by making
up tokens. Over the limit, the answer is 429 with ``Retry-After`` (whole
seconds until the bucket holds a request again), before the route reads
anything. ``/health`` and ``/metrics`` are never limited: probes and scrapers
must see a service that is busy.

Which bucket a token belongs to is remembered for a minute (by its SHA-256),
so a request costs no extra database round trip; a token not yet known is
looked up only while its address has requests left, so made-up tokens cause
no more lookups than the address's own rate. Revocation still takes effect at
once: the routes authenticate every request themselves, this only decides
whose budget a request spends.

Limits are per process: with several servers behind a balancer, each allows
the rate (set it accordingly). SOULPRINT_RATE_LIMIT_PER_MIN=0 turns them off.
"""

from __future__ import annotations

import collections
import hashlib
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from starlette.requests import Request

from soulprint.services.http.errors import RateLimited, error_response, message_of
from soulprint.services.http.inputs import bearer_token

if TYPE_CHECKING:
    from soulprint.services.auth import Authenticator

EXEMPT = frozenset({"/health", "/metrics"})
KNOWN_FOR_S = 60.0    # how long a token's bucket is remembered
MAX_KNOWN = 10_000    # tokens remembered at once (least recently seen go first)
MAX_BUCKETS = 50_000  # buckets kept; full ones are forgotten first (a full bucket is a new bucket)


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """``rate_per_s`` requests a second on average and ``burst`` at once, per key; ``clock`` is injectable."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.clock = clock
        self.buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float:
        """Spend one request of ``key``'s bucket: 0.0 if it had one, else the seconds until it will."""
        bucket = self._refilled(key)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return self.wait(key)

    def wait(self, key: str) -> float:
        """The seconds until ``key``'s bucket holds a request (0.0: it does now), spending nothing."""
        bucket = self._refilled(key)
        return 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / self.rate

    def _refilled(self, key: str) -> _Bucket:
        now = self.clock()
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= MAX_BUCKETS:
                self._forget_full(now)
            bucket = self.buckets[key] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        return bucket

    def _forget_full(self, now: float) -> None:
        full = [k for k, b in self.buckets.items() if b.tokens + (now - b.at) * self.rate >= self.burst]
        for key in full or list(self.buckets)[: len(self.buckets) // 2]:
            del self.buckets[key]


class RateLimit:
    """ASGI middleware: charge each HTTP request to its principal's bucket, or answer 429."""

    def __init__(self, app, *, auth: "Authenticator", per_min: int, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.auth = auth
        self.buckets = TokenBuckets(per_min / 60.0, burst, clock) if per_min > 0 else None
        self.clock = clock
        self.known: collections.OrderedDict[str, tuple[str, float]] = collections.OrderedDict()

    async def __call__(self, scope, receive, send) -> None:
        if self.buckets is None or scope["type"] != "http" or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        wait = await self._charge(Request(scope))
        if wait > 0:
            limited = RateLimited("too many requests for this token: retry later",
                                  headers={"Retry-After": str(max(1, math.ceil(wait)))})
            await error_response(429, message_of(limited), limited.headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _charge(self, request: Request) -> float:
        address = f"addr:{request.client.host if request.client else '-'}"
        token = bearer_token(request)
        if token is None:
            return self.buckets.take(address)
        digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
        key = self._known(digest)
        if key is None:
            wait = self.buckets.wait(address)  # an address out of requests makes no lookups
            if wait > 0:
                return wait
            key = await self._lookup(token, digest)
        return self.buckets.take(key or address)

    def _known(self, digest: str) -> str | None:
        """The bucket of a token seen lately ("" for an invalid one: its address's), None if not seen."""
        entry = self.known.get(digest)
        if entry is None or entry[1] <= self.clock():
            return None
        self.known.move_to_end(digest)
        return entry[0]

    async def _lookup(self, token: str, digest: str) -> str:
        principal = await self.auth.authenticate(token)
        key = "" if principal is None else ("admin" if principal.admin else f"token:{principal.token_id}")
        self.known[digest] = (key, self.clock() + KNOWN_FOR_S)
        self.known.move_to_end(digest)
        while len(self.known) > MAX_KNOWN:
            self.known.popitem(last=False)
        return key
