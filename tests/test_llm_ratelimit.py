"""Adaptive limiter, header parsing, retry budget, answer validation, usage and cache keys."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from soulprint.models.llm import LLMRequest, Usage
from soulprint.services.llm.anthropic_provider import AnthropicClient
from soulprint.services.llm.cache import cache_key
from soulprint.services.llm.config import LLMConfig, ModelPrice
from soulprint.services.llm.ratelimit import (
    AdaptiveLimiter,
    exhausted_pause,
    parse_retry_after,
    reset_seconds,
    shared_limiter,
)
from support.fixtures_llm import fake_server, fast_config, fresh_limiter, small_request

__all__ = ["fake_server"]


async def settle(cond, rounds: int = 100) -> None:
    """Let other tasks run (event-loop turns, no wall-clock waiting) until cond() holds."""
    for _ in range(rounds):
        if cond():
            return
        await asyncio.sleep(0)
    assert cond()


# --------------------------------------------------------------------------- limiter


async def test_limiter_bounds_concurrency():
    lim = AdaptiveLimiter(2, 10)
    gate = asyncio.Event()

    async def worker():
        async with lim.slot() as s:
            await gate.wait()
            s.success()

    tasks = [asyncio.create_task(worker()) for _ in range(5)]
    await settle(lambda: lim.in_flight == 2 and lim.stats()["waiting"] == 3)
    gate.set()
    await asyncio.gather(*tasks)
    assert lim.peak_in_flight == 2 and lim.in_flight == 0


async def test_limiter_halves_once_per_congestion_epoch():
    lim = AdaptiveLimiter(8, 64)
    gate = asyncio.Event()

    async def throttled():
        async with lim.slot() as s:
            await gate.wait()
            s.throttled()

    tasks = [asyncio.create_task(throttled()) for _ in range(4)]
    await settle(lambda: lim.in_flight == 4)
    gate.set()
    await asyncio.gather(*tasks)
    # Four answers reporting the same congestion: one decrease, not four.
    assert lim.limit == 4 and lim.decreases == 1
    async with lim.slot() as s:
        s.throttled()
    assert lim.limit == 2 and lim.decreases == 2
    for _ in range(5):
        async with lim.slot() as s:
            s.throttled()
    assert lim.limit == 1 and lim.lowest_limit == 1


async def test_limiter_grows_by_one_per_window_up_to_max():
    lim = AdaptiveLimiter(2, 3)
    for _ in range(2):
        async with lim.slot() as s:
            s.success()
    assert lim.limit == 3 and lim.increases == 1
    for _ in range(10):
        async with lim.slot() as s:
            s.success()
    assert lim.limit == 3


async def test_limiter_fixed_increase_after():
    lim = AdaptiveLimiter(4, 10, increase_after=1)
    async with lim.slot() as s:
        s.success()
    assert lim.limit == 5


async def test_limiter_pause_blocks_acquisitions():
    now = [100.0]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    lim = AdaptiveLimiter(4, 8, clock=lambda: now[0], sleep=fake_sleep)
    lim.pause_for(2.5)
    lim.pause_for(1.0)  # a shorter pause never shortens a longer one
    assert lim.pause_remaining() == 2.5
    async with lim.slot():
        pass
    assert slept == [2.5] and lim.pause_remaining() == 0


async def test_cancelled_waiter_does_not_leak_a_slot():
    lim = AdaptiveLimiter(1, 1)
    gate = asyncio.Event()

    async def holder():
        async with lim.slot():
            await gate.wait()

    h = asyncio.create_task(holder())
    await settle(lambda: lim.in_flight == 1)
    waiter = asyncio.create_task(holder())
    await settle(lambda: lim.stats()["waiting"] == 1)
    waiter.cancel()
    gate.set()
    await h
    with pytest.raises(asyncio.CancelledError):
        await waiter
    async with lim.slot():  # would hang if the cancelled waiter had kept the slot
        assert lim.in_flight == 1
    assert lim.in_flight == 0


def test_shared_limiter_is_per_key():
    a = shared_limiter("test:a", 4, 8)
    assert shared_limiter("test:a", 1, 1) is a
    assert shared_limiter("test:b", 4, 8) is not a


# --------------------------------------------------------------------------- headers


def test_parse_retry_after():
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None and parse_retry_after(None) is None
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 <= parse_retry_after({"retry-after": later}) <= 30


def test_exhausted_pause_reads_anthropic_headers():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    headers = {
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2025-01-01T12:00:07Z",
        "anthropic-ratelimit-tokens-remaining": "5000",
        "anthropic-ratelimit-tokens-reset": "2025-01-01T12:00:30Z",
    }
    assert exhausted_pause(headers, now) == 7.0  # no limit header: wait for the reset
    headers["anthropic-ratelimit-requests-limit"] = "50"
    assert exhausted_pause(headers, now) == pytest.approx(1.2)  # one request's worth of refill: 60/50 s
    headers["anthropic-ratelimit-tokens-remaining"] = "0"
    assert exhausted_pause(headers, now) == 3.0  # token buckets: a tenth of the full refill
    assert exhausted_pause({"anthropic-ratelimit-requests-remaining": "3"}, now) is None
    assert reset_seconds("2024-12-31T00:00:00Z", now) == 0.0  # past resets never go negative


async def test_remaining_zero_on_success_pauses_the_limiter(fake_server):
    fake_server.configure(rpm=2)
    limiter = fresh_limiter()
    client = AnthropicClient(fast_config(fake_server.url, cache_enabled=False), limiter=limiter)
    first = await client.complete(small_request("one"))
    assert first.ok and limiter.pause_remaining() == 0
    second = await client.complete(small_request("two"))  # the answer says 0 requests remain
    await client.aclose()
    assert second.ok
    assert 0 < limiter.pause_remaining() <= 30  # 60 s / rpm 2


async def test_retry_after_beyond_max_wait_gives_up_without_sleeping(fake_server):
    fake_server.configure(error_rate_429=1.0, retry_after=30)
    slept: list[float] = []

    async def record(s: float) -> None:
        slept.append(s)

    client = AnthropicClient(fast_config(fake_server.url, max_wait_s=1.0, cache_enabled=False),
                             limiter=fresh_limiter(), sleep=record)
    res = await client.complete(small_request())
    await client.aclose()
    assert not res.ok and res.error_kind == "rate_limited" and res.attempts == 1 and slept == []


async def test_backoff_is_bounded_and_deterministic(fake_server):
    async def run() -> list[float]:
        fake_server.reset()
        fake_server.configure(error_rate_500=1.0)
        slept: list[float] = []

        async def record(s: float) -> None:
            slept.append(s)

        client = AnthropicClient(fast_config(fake_server.url, max_attempts=4, backoff_base_s=0.01,
                                             backoff_max_s=0.03, cache_enabled=False),
                                 limiter=fresh_limiter(), sleep=record)
        res = await client.complete(small_request())
        await client.aclose()
        assert not res.ok and res.error_kind == "api" and res.attempts == 4
        return slept

    first, second = await run(), await run()
    assert first == second and len(first) == 3
    assert all(0.005 <= s <= 0.03 for s in first)


# --------------------------------------------------------------------------- validator, usage, cache keys


class Inner(BaseModel):
    e: bool


class Probe(BaseModel):
    a: Literal["x", "y"]
    b: list[int] = Field(max_length=2)
    c: str | None = None
    d: Inner
    n: list[int] = []


def test_answer_model_validates_with_short_errors_and_paths():
    """The errors go back to the model in the repair request: one short line each, with its JSON path."""
    req = LLMRequest(task="probe", system="", messages=[], answer=Probe)
    answer, errors = req.check({"a": "x", "b": [1, 2], "c": None, "d": {"e": True}, "extra": 1})
    assert errors == [] and answer == Probe(a="x", b=[1, 2], d=Inner(e=True))
    _, errors = req.check({"a": "z", "b": [1, 2, 3], "d": {}, "n": [1, "two"]})
    assert "$.a: Input should be 'x' or 'y'" in errors
    assert any(e.startswith("$.b: List should have at most 2 items") for e in errors)
    assert "$.d: missing required property 'e'" in errors
    assert any(e.startswith("$.n[1]: ") for e in errors)
    assert req.check({"a": "x", "d": {"e": False}}) == (None, ["$: missing required property 'b'"])
    assert req.check([1])[0] is None
    # The tool schema is the model's: inlined, no titles, the enum as an enum.
    assert req.schema["properties"]["d"] == {"properties": {"e": {"type": "boolean"}}, "required": ["e"],
                                             "type": "object"}
    assert req.schema["properties"]["a"] == {"enum": ["x", "y"], "type": "string"}
    assert "title" not in req.schema and "$defs" not in req.schema


def test_usage_adds_and_prices():
    price = ModelPrice(1.0, 5.0, 1.25, 0.10)
    u = Usage.from_api({"input_tokens": 1_000_000, "output_tokens": 200_000, "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 1_000_000}, price)
    assert u.requests == 1 and u.cost_usd == pytest.approx(1.0 + 1.0 + 0.10)
    total = sum([u, Usage(cache_hits=1), Usage(throttled=2)], Usage())
    assert total.requests == 1 and total.cache_hits == 1 and total.throttled == 2
    assert Usage.from_dict(total.to_dict()) == total


def test_prices_match_aliases_dated_and_bedrock_ids():
    cfg = LLMConfig()
    assert cfg.price_for("claude-haiku-4-5") == (1.0, 5.0, 1.25, 0.10)
    assert cfg.price_for("claude-haiku-4-5-20251001") == (1.0, 5.0, 1.25, 0.10)
    assert cfg.price_for("anthropic.claude-sonnet-4-5-20250929-v1:0") == (3.0, 15.0, 3.75, 0.30)
    assert cfg.price_for("some-other-model") is None


def test_cache_key_is_stable_and_specific():
    a = small_request()
    b = small_request()
    b.schema = dict(reversed(list(a.schema.items())))  # same schema, other key order
    assert b.schema == a.schema and list(b.schema) != list(a.schema)
    assert cache_key("anthropic", "m", a) == cache_key("anthropic", "m", b)
    assert cache_key("anthropic", "m", a) != cache_key("bedrock", "m", a)
    assert cache_key("anthropic", "m", a) != cache_key("anthropic", "m2", a)
    c = small_request(max_tokens=99)
    assert cache_key("anthropic", "m", a) != cache_key("anthropic", "m", c)
    d = small_request(job_id="other-job", stage="other")  # bookkeeping does not change the answer
    assert cache_key("anthropic", "m", a) == cache_key("anthropic", "m", d)


def test_prompt_version_is_part_of_the_cache_key():
    """Editing a prompt means bumping its version: the old answers are then never served."""
    a = small_request()
    bumped = replace(a, prompt_version=a.prompt_version + 1)
    assert (bumped.system, bumped.messages, bumped.schema) == (a.system, a.messages, a.schema)
    assert cache_key("anthropic", "m", a) != cache_key("anthropic", "m", bumped)


async def test_waiters_woken_during_a_pause_do_not_deadlock():
    """Every waiter is woken while a pause holds; after the pause, with nothing in
    flight to release a slot, they must still get their turns."""
    import asyncio

    from soulprint.services.llm.ratelimit import AdaptiveLimiter

    limiter = AdaptiveLimiter(1, 4, name="pause-test")
    finished = []

    async def call(i: int) -> None:
        async with limiter.slot() as slot:
            if i == 0:
                for _ in range(5):  # yield, so that every other call queues behind this one
                    await asyncio.sleep(0)
                limiter.pause_for(0.01)
                slot.outcome = "throttled"
            finished.append(i)

    await asyncio.wait_for(asyncio.gather(*(call(i) for i in range(20))), timeout=10)
    assert sorted(finished) == list(range(20))
    assert limiter.in_flight == 0
