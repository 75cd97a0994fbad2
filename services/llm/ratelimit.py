"""Adaptive concurrency (AIMD) and rate-limit header parsing.

One :class:`AdaptiveLimiter` per provider per process (see
:func:`shared_limiter`): every stage of every job shares the account's limits,
so they must share one view of how hard we can push. The limit halves when the
server answers 429/529 and grows by one after a window of successes, between 1
and ``max_limit``; a ``retry-after`` pauses *all* callers, since the limit
belongs to the account, not to the request that hit it.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import logging
import time
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

log = logging.getLogger(__name__)


class _Slot:
    """Handed to the holder of one unit of concurrency to report the outcome."""

    __slots__ = ("_limiter", "epoch", "outcome")

    def __init__(self, limiter: "AdaptiveLimiter", epoch: int) -> None:
        self._limiter = limiter
        self.epoch = epoch
        self.outcome: str | None = None

    def success(self) -> None:
        self.outcome = "success"

    def throttled(self) -> None:
        self.outcome = "throttled"


class AdaptiveLimiter:
    """An async semaphore whose size follows AIMD.

    * ``slot()`` waits for a free unit (and for any pause to end).
    * throttled → limit halves, at most once per "epoch": requests that were
      already in flight when the limit dropped report the same congestion, and
      counting each of them would collapse the limit to 1 after one burst
      (TCP makes the same one-decrease-per-window choice).
    * success → after ``increase_after`` successes (default: the current
      limit, i.e. one full window) the limit grows by one.
    """

    def __init__(self, initial: int = 8, max_limit: int = 64, *, min_limit: int = 1,
                 increase_after: int | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep, name: str = "") -> None:
        self.name = name
        self.min_limit = max(1, min_limit)
        self.max_limit = max(self.min_limit, max_limit)
        self.limit = min(max(initial, self.min_limit), self.max_limit)
        self.initial = self.limit
        self.increase_after = increase_after
        self._clock = clock
        self._sleep = sleep
        self.in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._epoch = 0
        self._successes = 0
        self._paused_until = 0.0
        # Observability (tests and /metrics): how the limit moved.
        self.decreases = 0
        self.increases = 0
        self.lowest_limit = self.limit
        self.peak_in_flight = 0

    # -- acquiring

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[_Slot]:
        await self._acquire()
        s = _Slot(self, self._epoch)
        try:
            yield s
        finally:
            self._release(s)

    async def _acquire(self) -> None:
        while True:
            wait = self._paused_until - self._clock()
            if wait > 0:
                await self._sleep(wait)
                continue
            if self.in_flight < self.limit and not self._waiters:
                break
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            # Capacity may be free with nothing in flight to release it (the
            # waiters were all woken during a pause and went back to sleep):
            # hand it out now, or nobody ever will.
            self._wake()
            try:
                await fut
            except BaseException:
                if fut in self._waiters:
                    self._waiters.remove(fut)
                elif fut.done() and not fut.cancelled():
                    self._wake()  # we were handed a turn we will not use: pass it on
                raise
            # Woken: re-check pause and capacity (the limit may have dropped).
            if self.in_flight < self.limit and self._paused_until <= self._clock():
                break
            # Lost the race (limit dropped or pause began): queue at the front
            # next time round by looping; fairness is approximate and that is fine.
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def _release(self, s: _Slot) -> None:
        self.in_flight -= 1
        if s.outcome == "throttled":
            self._on_throttled(s.epoch)
        elif s.outcome == "success":
            self._on_success()
        self._wake()

    def _wake(self) -> None:
        free = self.limit - self.in_flight
        while free > 0 and self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                free -= 1

    # -- feedback

    def _on_throttled(self, epoch: int) -> None:
        if epoch != self._epoch:
            return  # already reacted to this congestion
        old = self.limit
        self.limit = max(self.min_limit, self.limit // 2)
        self._epoch += 1
        self._successes = 0
        self.decreases += 1
        self.lowest_limit = min(self.lowest_limit, self.limit)
        if self.limit != old:
            log.info("llm limiter %s: throttled, concurrency %d -> %d", self.name, old, self.limit)

    def _on_success(self) -> None:
        self._successes += 1
        need = self.increase_after or self.limit
        if self._successes >= need and self.limit < self.max_limit:
            self.limit += 1
            self._successes = 0
            self.increases += 1

    def pause_for(self, seconds: float) -> None:
        """Hold every new acquisition for ``seconds`` (from retry-after or a reset header)."""
        if seconds > 0:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def pause_remaining(self) -> float:
        """Seconds until new acquisitions may proceed (0 when not paused)."""
        return max(0.0, self._paused_until - self._clock())

    def stats(self) -> dict[str, Any]:
        return {"limit": self.limit, "in_flight": self.in_flight, "waiting": len(self._waiters),
                "decreases": self.decreases, "increases": self.increases, "lowest_limit": self.lowest_limit,
                "peak_in_flight": self.peak_in_flight}


_SHARED: dict[str, AdaptiveLimiter] = {}


def shared_limiter(key: str, initial: int, max_limit: int) -> AdaptiveLimiter:
    """The process-wide limiter for one provider endpoint (created on first use)."""
    lim = _SHARED.get(key)
    if lim is None:
        lim = _SHARED[key] = AdaptiveLimiter(initial, max_limit, name=key)
    return lim


def reset_shared_limiters() -> None:
    _SHARED.clear()


# --------------------------------------------------------------------------- headers


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``retry-after`` (seconds, fractional, or HTTP date)."""
    if not headers:
        return None
    ms = _get(headers, "retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    ra = _get(headers, "retry-after")
    if ra is None:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


# Anthropic's headers: anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}
_LIMIT_KINDS = ("requests", "tokens", "input-tokens", "output-tokens")


def exhausted_pause(headers: Mapping[str, str] | None, now: datetime | None = None) -> float | None:
    """If a rate-limit bucket reports ``remaining: 0``, how long to hold new requests.

    Sending into an empty bucket is a guaranteed 429, so the limiter pauses
    first. The reset header is when the bucket is *fully* replenished, but
    Anthropic's buckets refill continuously, so waiting for the full reset
    (up to a minute) would idle a process that could send again much sooner.
    We wait for roughly one request's worth of refill instead: 60/limit
    seconds for the requests bucket, a tenth of the full refill for token
    buckets (request sizes vary), never longer than the reset itself. If that
    is too early the 429's retry-after, which the server computes exactly,
    takes over. Returns the longest wait among exhausted buckets, else None.
    """
    if not headers:
        return None
    now = now or datetime.now(timezone.utc)
    wait: float | None = None
    for kind in _LIMIT_KINDS:
        remaining = _get(headers, f"anthropic-ratelimit-{kind}-remaining")
        if remaining is None:
            continue
        try:
            if int(float(remaining)) > 0:
                continue
        except ValueError:
            continue
        secs = reset_seconds(_get(headers, f"anthropic-ratelimit-{kind}-reset"), now)
        if secs is None:
            continue
        limit = _number(_get(headers, f"anthropic-ratelimit-{kind}-limit"))
        if kind == "requests" and limit:
            secs = min(secs, 60.0 / limit)
        elif kind != "requests":
            secs = secs / 10.0
        wait = secs if wait is None else max(wait, secs)
    return wait


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def reset_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """An RFC 3339 reset timestamp as seconds from now (never negative)."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def throttle_hint(headers: Mapping[str, str] | None) -> float | None:
    """How long a 429/529 tells us to wait: retry-after first, else the exhausted bucket's reset."""
    ra = parse_retry_after(headers)
    if ra is not None:
        return ra
    return exhausted_pause(headers)


def _get(headers: Mapping[str, str], name: str) -> str | None:
    # httpx/botocore header maps are case-insensitive; a plain dict may not be.
    v = headers.get(name)
    if v is None:
        for k, val in headers.items():
            if k.lower() == name:
                return val
    return v
