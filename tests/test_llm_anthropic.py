"""AnthropicClient: the real SDK against the in-process fake server."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from soulprint.domain.prompts.quick_sections import quick_sections_request
from soulprint.models.llm import Usage
from soulprint.models.sections import Sections, SectionsAnswer
from soulprint.services.db.jobs import Jobs
from soulprint.services.db.llm import PostgresCache, PostgresUsageSink, usage_for_job
from soulprint.services.llm.accounting import MemoryUsageSink
from soulprint.services.llm.anthropic_provider import AnthropicClient
from soulprint.services.llm.cache import MemoryCache
from soulprint.services.llm.factory import build_llm_client
from support.fake_anthropic import FakeAnthropicServer
from support.fixtures_llm import SmallAnswer, fake_server, fast_config, fresh_limiter, small_request, valid

__all__ = ["fake_server"]  # the fixture, imported so pytest registers it here

PAYLOAD = {
    "user_id": "user-42",
    "profile": {"user_profile": "I'm a data engineer at Acme Corp.", "user_instructions": "Be concise.",
                "saved_memory": ["User's name is Priya."]},
    "samples": [
        {"title": "Kafka", "excerpt": "User: I live in Lisbon and I use Python and Docker every day.",
         "created_at": 1700000000},
    ],
}


def client_for(srv: FakeAnthropicServer, *, sink=None, cache=None, limiter=None, **cfg) -> AnthropicClient:
    cfg.setdefault("cache_enabled", cache is not None)
    return AnthropicClient(fast_config(srv.url, **cfg), sink=sink, cache=cache, limiter=limiter or fresh_limiter())


async def test_structured_answer_is_validated(fake_server):
    client = client_for(fake_server)
    res = await client.complete(small_request())
    await client.aclose()
    assert res.ok, res.error
    assert valid(SmallAnswer, res.data) and isinstance(res.answer, SmallAnswer)
    assert res.provider == "anthropic" and res.model == "claude-haiku-4-5" and not res.offline
    assert res.usage.requests == 1 and res.usage.input_tokens > 0 and res.usage.output_tokens > 0
    assert res.usage.cost_usd > 0
    sent = fake_server.requests_log[-1]["body"]
    assert "temperature" not in sent
    assert sent["tool_choice"] == {"type": "tool", "name": "record_probe"}


async def test_quick_sections_through_the_sdk(fake_server):
    client = client_for(fake_server)
    res = await client.complete(quick_sections_request(PAYLOAD, job_id="j1"))
    await client.aclose()
    assert res.ok, res.error
    assert valid(SectionsAnswer, res.data)
    sections = Sections.from_result(res)
    assert not sections.offline
    text = sections.soulprint_text()
    assert text.index("# SOUL") < text.index("# IDENTITY") < text.index("# USER") < text.index("# AGENTS") \
        < text.index("# TOOLS")
    assert "Generated offline" not in text


async def test_schema_break_repairs_once_then_fails_contained(fake_server):
    fake_server.configure(schema_break_rate=1.0)
    client = client_for(fake_server)
    res = await client.complete(small_request())
    await client.aclose()
    assert not res.ok
    assert res.error_kind == "schema"
    assert "missing required property" in res.error
    assert "\n" not in res.error
    assert fake_server.stats()["requests"] == 2  # the answer and exactly one repair
    assert res.usage.requests == 2


async def test_schema_break_then_valid_repair(fake_server):
    fake_server.script(["schema_break", "ok"])
    client = client_for(fake_server)
    res = await client.complete(small_request())
    await client.aclose()
    assert res.ok, res.error
    assert valid(SmallAnswer, res.data)
    assert fake_server.stats()["requests"] == 2
    repair = fake_server.requests_log[-1]["body"]["messages"]
    # The bad tool call is shown back, answered by an error tool_result naming the problem.
    assert repair[-2]["role"] == "assistant" and repair[-2]["content"][0]["type"] == "tool_use"
    result_block = repair[-1]["content"][0]
    assert result_block["type"] == "tool_result" and result_block["is_error"] is True
    assert "title" in result_block["content"]


async def test_text_instead_of_tool_call_is_repaired(fake_server):
    fake_server.script(["malformed", "ok"])
    client = client_for(fake_server)
    res = await client.complete(small_request())
    await client.aclose()
    assert res.ok, res.error
    repair = fake_server.requests_log[-1]["body"]["messages"]
    assert repair[-1]["content"][0]["type"] == "text"


async def test_truncated_answer_gets_more_room_on_repair(fake_server):
    fake_server.script(["truncated", "ok"])
    client = client_for(fake_server)
    res = await client.complete(small_request(max_tokens=1000))
    await client.aclose()
    assert res.ok, res.error
    assert fake_server.requests_log[-1]["body"]["max_tokens"] == 2000


async def test_429_storm_is_ridden_out_and_limiter_shrinks(fake_server):
    fake_server.configure(retry_after=0.02, script=["429"] * 8)
    limiter = fresh_limiter(initial=8)
    client = client_for(fake_server, limiter=limiter, max_attempts=6)
    results = await asyncio.gather(*(client.complete(small_request(f"question {i} about Lisbon"))
                                     for i in range(16)))
    await client.aclose()
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert limiter.decreases >= 1
    assert limiter.lowest_limit < 8
    stats = fake_server.stats()
    assert stats["status"]["429"] == 8
    assert sum(r.usage.throttled for r in results) == 8
    assert stats["max_in_flight"] <= 8


async def test_429_retry_after_header_is_used(fake_server):
    fake_server.configure(retry_after=0.05, script=["429", "ok"])
    waits: list[float] = []

    async def record_sleep(s: float) -> None:
        waits.append(s)

    client = AnthropicClient(fast_config(fake_server.url, cache_enabled=False), limiter=fresh_limiter(),
                             sleep=record_sleep)
    res = await client.complete(small_request())
    await client.aclose()
    assert res.ok and res.attempts == 2
    assert len(waits) == 1 and 0.05 <= waits[0] <= 0.055 + 1e-9  # retry-after plus at most 10% jitter


async def test_529_overloaded_is_retried(fake_server):
    fake_server.script(["529", "529", "ok"])
    limiter = fresh_limiter()
    client = client_for(fake_server, limiter=limiter)
    res = await client.complete(small_request())
    await client.aclose()
    assert res.ok, res.error
    assert res.attempts == 3 and res.usage.throttled == 2 and res.usage.requests == 1
    assert limiter.decreases >= 1


async def test_overload_that_never_ends_is_contained(fake_server):
    fake_server.configure(error_rate_529=1.0)
    client = client_for(fake_server, max_attempts=3)
    res = await client.complete(small_request())
    await client.aclose()
    assert not res.ok and res.error_kind == "overloaded" and res.attempts == 3
    assert fake_server.stats()["requests"] == 3


async def test_timeouts_are_contained(fake_server):
    fake_server.configure(timeout_rate=1.0, hang_s=10.0)
    client = client_for(fake_server, timeout_s=0.2, max_attempts=2)
    res = await client.complete(small_request())
    await client.aclose()
    assert not res.ok
    assert res.error_kind == "timeout"
    assert res.attempts == 2
    stats = fake_server.stats()
    assert stats["requests"] == 2 and stats["outcomes"]["timeout"] == 2
    assert res.usage.requests == 0 and res.usage.cost_usd == 0


async def test_bad_request_is_not_retried(fake_server):
    client = client_for(fake_server)
    # An assistant tool_use with no tool_result after it: the API answers 400.
    req = small_request()
    req.messages = [{"role": "user", "content": "hi"},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_x", "name": "t", "input": {}}]},
                    {"role": "user", "content": "again"}]
    res = await client.complete(req)
    await client.aclose()
    assert not res.ok and res.error_kind == "api" and res.attempts == 1
    assert "400" in res.error


async def test_unreachable_server_is_contained():
    srv = FakeAnthropicServer()
    await srv.start()
    url = srv.url
    await srv.stop()  # nothing listens there any more
    client = AnthropicClient(fast_config(url, max_attempts=2, cache_enabled=False), limiter=fresh_limiter())
    res = await client.complete(small_request())
    await client.aclose()
    assert not res.ok and res.error_kind == "api" and res.attempts == 2


async def test_second_identical_request_is_served_from_cache(fake_server):
    sink = MemoryUsageSink()
    client = client_for(fake_server, sink=sink, cache=MemoryCache())
    first = await client.complete(small_request())
    second = await client.complete(small_request())
    await client.aclose()
    assert first.ok and second.ok
    assert not first.cached and second.cached
    assert second.data == first.data
    assert fake_server.stats()["requests"] == 1
    assert second.usage == Usage(cache_hits=1)
    assert sink.total().requests == 1 and sink.total().cache_hits == 1


async def test_cache_can_be_disabled(fake_server):
    client = client_for(fake_server, cache=MemoryCache(), cache_enabled=False)
    await client.complete(small_request())
    res = await client.complete(small_request())
    await client.aclose()
    assert not res.cached
    assert fake_server.stats()["requests"] == 2


async def test_failed_answers_are_not_cached(fake_server):
    fake_server.configure(schema_break_rate=1.0)
    cache = MemoryCache()
    client = client_for(fake_server, cache=cache)
    first = await client.complete(small_request())
    fake_server.configure(schema_break_rate=0.0)
    second = await client.complete(small_request())
    await client.aclose()
    assert not first.ok and second.ok and not second.cached
    assert len(cache) == 1


async def test_accounting_equals_server_counters(fake_server):
    fake_server.configure(retry_after=0.01, script=["429", "schema_break", "ok", "529", "ok", "malformed"])
    sink = MemoryUsageSink()
    client = client_for(fake_server, sink=sink, cache=MemoryCache())
    reqs = [small_request(f"message number {i}", job_id="job-acc", stage="quick_pass") for i in range(6)]
    reqs.append(quick_sections_request(PAYLOAD, job_id="job-acc"))
    results = [await client.complete(r) for r in reqs]
    results.append(await client.complete(reqs[0]))  # a cache hit: no server request
    await client.aclose()
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    total = sink.total("job-acc")
    stats = fake_server.stats()
    assert total.requests == stats["status"]["200"]
    assert total.throttled == stats["status"]["429"] + stats["status"]["529"]
    for k in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        assert getattr(total, k) == stats[k], k
    assert total.cache_hits == 1
    price = fast_config().price_for("claude-haiku-4-5")
    expected = (stats["input_tokens"] * price.input + stats["output_tokens"] * price.output
                + stats["cache_creation_input_tokens"] * price.cache_write
                + stats["cache_read_input_tokens"] * price.cache_read) / 1e6
    assert total.cost_usd == pytest.approx(expected)
    summary = sink.for_job("job-acc")
    assert set(summary["stages"]) == {"quick_pass"}
    assert summary["total"]["requests"] == stats["status"]["200"]


async def test_prompt_cache_tokens_are_counted(fake_server):
    fake_server.configure(min_cache_tokens=0)
    client = client_for(fake_server)  # our response cache off: both requests reach the server
    system = "You are a careful assistant. " * 50
    a = await client.complete(small_request("first question", system=system))
    b = await client.complete(small_request("second question", system=system))
    await client.aclose()
    assert a.ok and b.ok
    assert a.usage.cache_creation_input_tokens > 0 and a.usage.cache_read_input_tokens == 0
    assert b.usage.cache_read_input_tokens == a.usage.cache_creation_input_tokens
    body = fake_server.requests_log[-1]["body"]
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}


async def test_text_request(fake_server):
    client = client_for(fake_server)
    res = await client.complete(small_request(answer=None, model_role="chat"))
    await client.aclose()
    assert res.ok and res.data is None and res.text
    assert res.model == "claude-sonnet-4-5"
    assert "tools" not in fake_server.requests_log[-1]["body"]


async def test_factory_builds_anthropic_when_key_given(fake_server):
    client = build_llm_client(fast_config(fake_server.url), limiter=fresh_limiter())
    assert isinstance(client, AnthropicClient)
    res = await client.complete(small_request())
    await client.aclose()
    assert res.ok


# --------------------------------------------------------------------------- Postgres (lead's pg_pool fixture)


@pytest.fixture
def pg(request):
    """The lead's session-scoped ``pg_pool`` (tests/conftest.py), or a skip while it does not exist."""
    try:
        return request.getfixturevalue("pg_pool")
    except pytest.FixtureLookupError:
        pytest.skip("pg_pool fixture not provided by tests/conftest.py yet")


async def test_postgres_cache_round_trip(pg, fake_server):
    cache = PostgresCache(pg)
    client = client_for(fake_server, cache=cache)
    req = small_request(f"postgres cache {uuid.uuid4()}", job_id=None)  # nobody's: kept without an owner
    first = await client.complete(req)
    second = await client.complete(req)
    await client.aclose()
    assert first.ok and second.ok and second.cached and second.data == first.data
    assert fake_server.stats()["requests"] == 1
    assert await cache.get("no-such-key") is None


async def test_postgres_usage_accumulates(pg, fake_server):
    job = f"job-{uuid.uuid4()}"
    await Jobs(pg).create(job, "user-usage", "file:///export.zip")  # usage of a job that is gone is anonymous
    sink = PostgresUsageSink(pg)
    client = client_for(fake_server, sink=sink, cache=MemoryCache())
    r1 = await client.complete(small_request("one", job_id=job, stage="quick_pass"))
    r2 = await client.complete(small_request("two", job_id=job, stage="quick_pass"))
    r3 = await client.complete(small_request("one", job_id=job, stage="quick_pass"))  # cache hit
    r4 = await client.complete(small_request("three", job_id=job, stage="facts"))
    await client.aclose()
    assert r3.cached
    summary = await usage_for_job(pg, job)
    quick = summary["stages"]["quick_pass"]
    assert quick["requests"] == 2 and quick["cache_hits"] == 1
    assert quick["input_tokens"] == r1.usage.input_tokens + r2.usage.input_tokens
    assert summary["stages"]["facts"]["requests"] == 1
    assert summary["total"]["requests"] == 3
    assert summary["total"]["cost_usd"] == pytest.approx(r1.usage.cost_usd + r2.usage.cost_usd + r4.usage.cost_usd)
    stats = fake_server.stats()
    assert summary["total"]["output_tokens"] == stats["output_tokens"]
