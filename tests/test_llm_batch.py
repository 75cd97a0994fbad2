"""complete_many() through the Message Batches API: the real SDK against the fake server."""

from __future__ import annotations

import asyncio
import re
import uuid

import anthropic
import pytest

from soulprint.services.llm.accounting import MemoryUsageSink
from soulprint.services.llm.anthropic_provider import AnthropicClient
from soulprint.services.db import PostgresBatchStore
from soulprint.services.llm.batch_store import MemoryBatchStore
from soulprint.services.llm.cache import MemoryCache
from soulprint.services.llm.offline_provider import OfflineClient
from support.fake_anthropic import FakeAnthropicServer
from support.fixtures_llm import fast_config, fresh_limiter, small_request

# Each request's own words: the fake answers with words of the request it answers.
TOPICS = ["apricot orchard", "basalt quarry", "cobalt glaze", "dune buggy", "elderflower cordial",
          "fjord ferry", "granite tor", "heron marsh"]


def batch_client(srv: FakeAnthropicServer, *, sink=None, cache=None, store=None, sleep=None, **cfg) -> AnthropicClient:
    cfg.setdefault("cache_enabled", cache is not None)
    return AnthropicClient(fast_config(srv.url, batch_api=True, batch_poll_s=0.0, **cfg), sink=sink, cache=cache,
                           limiter=fresh_limiter(), sleep=sleep, batch_store=store)


def requests_for(topics: list[str], job_id: str = "job-1"):
    return [small_request(f"Tell me about the {t}", job_id=job_id) for t in topics]


async def sdk_batch(srv: FakeAnthropicServer, batch_id: str):
    async with anthropic.AsyncAnthropic(api_key="k", base_url=srv.url, max_retries=0) as c:
        return await c.messages.batches.retrieve(batch_id)


@pytest.mark.parametrize("order", ["reversed", "shuffled"])
async def test_results_are_matched_to_requests_by_custom_id(order):
    reqs = requests_for(TOPICS)
    async with FakeAnthropicServer(seed=3, batch_results_order=order, batch_polls=3) as srv:
        client = batch_client(srv)
        results = await client.complete_many(reqs)
        batches, routes = srv.stats()["batches"], dict(srv.stats()["by_route"])
        # The same requests one by one: the fake's answer depends only on the request.
        srv.reset()
        plain = AnthropicClient(fast_config(srv.url, cache_enabled=False), limiter=fresh_limiter())
        expected = [await plain.complete(r) for r in reqs]
        await client.aclose()
        await plain.aclose()

    assert batches == 1 and routes == {"batches": len(reqs)}  # one batch, no single message request
    assert all(r.ok for r in results), [r.error for r in results]
    assert [r.data for r in results] == [e.data for e in expected]
    for topic, result in zip(TOPICS, results):
        assert set(result.data["title"].split()) <= set(f"Tell me about the {topic}".split())


async def test_errored_expired_and_canceled_results_are_failed_results():
    reqs = requests_for(TOPICS[:4])
    async with FakeAnthropicServer(seed=4, batch_script=["ok", "errored", "expired", "canceled"]) as srv:
        client = batch_client(srv)
        ok, errored, expired, canceled = await client.complete_many(reqs)
        await client.aclose()

    assert ok.ok and ok.data["title"]
    assert not errored.ok and errored.error_kind == "api" and "invalid_request_error" in errored.error
    assert not expired.ok and expired.error_kind == "timeout" and "expired" in expired.error
    assert not canceled.ok and "canceled" in canceled.error
    assert all(r.data is None for r in (errored, expired, canceled))


async def test_batch_answers_cost_half_of_single_requests():
    reqs = requests_for(TOPICS[:5])
    batch_sink, plain_sink = MemoryUsageSink(), MemoryUsageSink()
    async with FakeAnthropicServer(seed=5) as srv:
        client = batch_client(srv, sink=batch_sink)
        await client.complete_many(reqs)
        srv.reset()
        plain = AnthropicClient(fast_config(srv.url, cache_enabled=False), sink=plain_sink, limiter=fresh_limiter())
        await plain.complete_many(reqs)  # batch_api off: the default, one request each
        await client.aclose()
        await plain.aclose()

    batch, single = batch_sink.total("job-1"), plain_sink.total("job-1")
    assert batch.requests == single.requests == len(reqs)
    assert (batch.input_tokens, batch.output_tokens) == (single.input_tokens, single.output_tokens) != (0, 0)
    assert batch.cost_usd == pytest.approx(single.cost_usd / 2)
    report = batch_sink.for_job("job-1")
    assert list(report["stages"]["probe"]["by_model"]) == ["anthropic-batch/claude-haiku-4-5"]


async def test_cached_answers_are_served_without_a_new_batch():
    reqs = requests_for(TOPICS[:3])
    cache, sink = MemoryCache(), MemoryUsageSink()
    async with FakeAnthropicServer(seed=6) as srv:
        client = batch_client(srv, cache=cache, sink=sink)
        first = await client.complete_many(reqs)
        again = await client.complete_many(reqs + requests_for(TOPICS[3:4]))
        batches = srv.stats()["batches"]
        await client.aclose()

    assert batches == 2  # the second batch holds only the new request
    assert [r.cached for r in again] == [True, True, True, False]
    assert [r.data for r in again[:3]] == [r.data for r in first]
    assert sink.total("job-1").cache_hits == 3


async def test_identical_requests_share_one_entry():
    req = requests_for(TOPICS[:1])[0]
    async with FakeAnthropicServer(seed=7) as srv:
        client = batch_client(srv)
        a, b = await client.complete_many([req, req])  # duplicate custom_ids would be a 400
        routes = dict(srv.stats()["by_route"])
        await client.aclose()
    assert a.ok and b.ok and a.data == b.data
    assert routes == {"batches": 1}


async def test_invalid_structured_answer_is_repaired_with_a_normal_call():
    sink = MemoryUsageSink()
    async with FakeAnthropicServer(seed=8, script=["schema_break"]) as srv:
        client = batch_client(srv, sink=sink)
        (result,) = await client.complete_many(requests_for(TOPICS[:1]))
        routes = dict(srv.stats()["by_route"])
        await client.aclose()

    assert result.ok and result.data["title"]
    assert routes == {"batches": 1, "messages": 1}  # the repair round is one ordinary request
    by_model = sink.for_job("job-1")["stages"]["probe"]["by_model"]
    assert by_model["anthropic-batch/claude-haiku-4-5"]["requests"] == 1
    assert by_model["anthropic/claude-haiku-4-5"]["requests"] == 1
    assert result.usage.requests == 2


async def test_a_batch_that_never_ends_fails_its_requests_and_is_canceled():
    async with FakeAnthropicServer(seed=9, batch_polls=10**9) as srv:
        client = batch_client(srv, batch_max_wait_s=0.0)
        results = await client.complete_many(requests_for(TOPICS[:2]))
        batch_id = re.search(r"msgbatch_\w+", results[0].error).group(0)
        batch = await sdk_batch(srv, batch_id)
        await client.aclose()

    assert all(not r.ok and r.error_kind == "timeout" and "did not end within" in r.error for r in results)
    assert batch.cancel_initiated_at is not None
    assert batch.processing_status == "ended" and batch.request_counts.canceled == 2


async def test_a_worker_dying_while_its_batch_is_pending_leaves_it_for_the_next_to_resume():
    reqs = requests_for(TOPICS[:4])
    store, sink = MemoryBatchStore(), MemoryUsageSink()

    async def dies(_seconds: float) -> None:  # the first wait between polls: the worker is stopped
        raise asyncio.CancelledError

    async with FakeAnthropicServer(seed=10, batch_polls=3) as srv:
        first = batch_client(srv, store=store, sink=sink, sleep=dies)
        with pytest.raises(asyncio.CancelledError):
            await first.complete_many(reqs)
        await first.aclose()
        pending = await store.pending(first.endpoint, [first.cache_key("claude-haiku-4-5", r) for r in reqs])

        second = batch_client(srv, store=store, sink=sink)
        results = await second.complete_many(list(reversed(reqs)))
        batches = srv.stats()["batches"]
        await second.aclose()

    assert len(pending) == 4 and len(set(pending.values())) == 1
    assert batches == 1  # resumed, not paid twice
    assert all(r.ok for r in results)
    assert sink.total("job-1").requests == 4  # accounted once, by the worker that read the results
    assert store.kept_alive and set(store.kept_alive) == {"job-1"}
    assert await store.pending(second.endpoint, list(pending)) == {}


async def test_a_remembered_batch_the_api_does_not_know_is_submitted_again():
    reqs = requests_for(TOPICS[:2])
    store = MemoryBatchStore()
    async with FakeAnthropicServer(seed=12) as srv:
        client = batch_client(srv, store=store)
        ids = [client.cache_key("claude-haiku-4-5", r) for r in reqs]
        await store.remember(client.endpoint, "msgbatch_gone", ids, ["job-1", "job-1"])
        results = await client.complete_many(reqs)
        batches = srv.stats()["batches"]
        await client.aclose()
    assert all(r.ok for r in results) and batches == 1
    assert await store.pending(client.endpoint, ids) == {}


async def test_providers_without_batches_answer_many_one_by_one():
    client = OfflineClient()
    reqs = requests_for(TOPICS[:3])
    results = await client.complete_many(reqs)
    assert len(results) == 3 and all(r.offline for r in results)


async def test_postgres_keepalive_moves_the_reconcilers_clock_of_a_processing_full_pass(db):
    store = PostgresBatchStore(db.pool)
    live, done = str(uuid.uuid4()), str(uuid.uuid4())
    for job_id, status in ((live, "processing"), (done, "complete")):
        await db.jobs.create(job_id, "user-batch", "file:///x.zip")
        await db.pool.execute("UPDATE import_jobs SET full_pass_status = $2,"
                              " full_pass_moved_at = now() - interval '1 hour' WHERE job_id = $1", job_id, status)
    await store.keepalive([live, done, ""])
    stalled = await db.pool.fetch("SELECT job_id FROM import_jobs WHERE job_id = ANY($1::text[])"
                                  " AND full_pass_moved_at < now() - interval '30 minutes'", [live, done])
    assert [r["job_id"] for r in stalled] == [done]  # only a full pass that is waiting on the batch


async def test_postgres_batch_store_resumes_and_claims_once(pg_pool):
    store = PostgresBatchStore(pg_pool)
    endpoint = f"anthropic:test-{uuid.uuid4().hex[:8]}"
    await store.remember(endpoint, "msgbatch_a", ["k1", "k2"], ["j", "j"])
    await store.remember(endpoint, "msgbatch_b", ["k2"], ["j"])  # k2 re-submitted later
    assert await store.pending(endpoint, ["k1", "k2", "k3"]) == {"k1": "msgbatch_a", "k2": "msgbatch_b"}
    assert await store.claim(endpoint, "msgbatch_b", ["k2"]) == {"k2"}
    assert await store.claim(endpoint, "msgbatch_b", ["k2"]) == set()  # a second reader accounts nothing
    assert await store.pending(endpoint, ["k2"]) == {"k2": "msgbatch_a"}
    assert await store.pending("anthropic:elsewhere", ["k1"]) == {}
