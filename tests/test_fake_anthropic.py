"""The fake Messages API itself: protocol shapes, faults, limits, counters, CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import anthropic
import pytest

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from soulprint.models.llm import tool_schema
from support.fake_anthropic import FakeAnthropicServer, synthesise
from support.fixtures_llm import SMALL_SCHEMA, SmallAnswer, fake_server, valid

__all__ = ["fake_server"]

TOOL = {"name": "record_probe", "input_schema": SMALL_SCHEMA}
CHOICE = {"type": "tool", "name": "record_probe"}


def sdk(srv: FakeAnthropicServer, **kw) -> anthropic.AsyncAnthropic:
    kw.setdefault("api_key", "test-key")
    return anthropic.AsyncAnthropic(base_url=srv.url, max_retries=0, **kw)


def http(url: str, method: str = "GET", body: dict | None = None, headers: dict | None = None
         ) -> tuple[int, dict, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json",
                                                                          **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read() or b"null")


async def ahttp(*args, **kw):
    # urllib blocks: run it off the loop the in-process server lives on.
    return await asyncio.to_thread(http, *args, **kw)


async def create(client, text="Tell me about Lisbon and Python", **kw):
    args = dict(model="claude-haiku-4-5", max_tokens=1024, messages=[{"role": "user", "content": text}],
                tools=[TOOL], tool_choice=CHOICE)
    args.update(kw)
    return await client.messages.create(**args)


async def test_forced_tool_answer_has_the_real_shape_and_validates(fake_server):
    async with sdk(fake_server) as c:
        msg = await create(c)
    assert msg.id.startswith("msg_") and msg.type == "message" and msg.role == "assistant"
    assert msg.stop_reason == "tool_use" and msg.model == "claude-haiku-4-5"
    block = msg.content[0]
    assert block.type == "tool_use" and block.id.startswith("toolu_") and block.name == "record_probe"
    assert valid(SmallAnswer, block.input)
    assert block.input["kind"] in ("person", "place")  # enums: only the allowed values
    words = set("Tell me about Lisbon and Python".split())
    assert set(block.input["title"].split()) <= words  # strings are drawn from the request


async def test_answers_are_deterministic(fake_server):
    async with sdk(fake_server) as c:
        a = await create(c)
        b = await create(c)
        other = await create(c, text="A completely different question about gardening")
    assert a.content[0].input == b.content[0].input
    assert a.content[0].input != other.content[0].input


async def test_text_answer_without_tools(fake_server):
    async with sdk(fake_server) as c:
        msg = await c.messages.create(model="claude-sonnet-4-5", max_tokens=200,
                                      messages=[{"role": "user", "content": "hello there"}])
    assert msg.stop_reason == "end_turn" and msg.content[0].type == "text" and msg.content[0].text


async def test_counters_equal_the_usage_returned(fake_server):
    fake_server.configure(min_cache_tokens=0, script=["429", "ok", "schema_break", "529", "malformed"])
    returned = {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0}
    system = [{"type": "text", "text": "Be precise. " * 40, "cache_control": {"type": "ephemeral"}}]
    async with sdk(fake_server) as c:
        for i in range(8):
            try:
                msg = await create(c, text=f"question {i}", system=system)
            except (anthropic.RateLimitError, anthropic.InternalServerError):
                continue
            for k in returned:
                returned[k] += getattr(msg.usage, k) or 0
    stats = fake_server.stats()
    for k, v in returned.items():
        assert stats[k] == v, k
    assert stats["requests"] == 8
    assert stats["status"] == {"200": 6, "429": 1, "529": 1}
    assert stats["cache_read_input_tokens"] > 0 and stats["cache_creation_input_tokens"] > 0
    assert stats["by_model"]["claude-haiku-4-5"]["responses"] == 6


async def test_auth_is_required(fake_server):
    status, _, body = await ahttp(fake_server.url + "/v1/messages", "POST",
                                  {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert status == 401 and body["error"]["type"] == "authentication_error"
    status, _, _ = await ahttp(fake_server.url + "/v1/messages", "POST",
                               {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
                               headers={"x-api-key": "k"})
    assert status == 200


async def test_temperature_is_rejected_like_the_real_models(fake_server):
    status, _, body = await ahttp(fake_server.url + "/v1/messages", "POST",
                                  {"model": "m", "max_tokens": 5, "temperature": 0.2,
                                   "messages": [{"role": "user", "content": "x"}]},
                                  headers={"authorization": "Bearer k"})
    assert status == 400 and body["error"]["type"] == "invalid_request_error"


async def test_random_429_has_retry_after_and_error_shape(fake_server):
    fake_server.configure(error_rate_429=1.0, retry_after=0.25)
    async with sdk(fake_server) as c:
        with pytest.raises(anthropic.RateLimitError) as info:
            await create(c)
    assert info.value.response.headers["retry-after"] == "0.25"
    assert info.value.body["error"]["type"] == "rate_limit_error"


async def test_529_overloaded(fake_server):
    fake_server.script(["529"])
    async with sdk(fake_server) as c:
        with pytest.raises(anthropic.InternalServerError) as info:
            await create(c)
    assert info.value.status_code == 529
    assert info.value.body["error"]["type"] == "overloaded_error"


async def test_rpm_window_answers_429_with_ratelimit_headers(fake_server):
    fake_server.configure(rpm=2)
    async with sdk(fake_server) as c:
        raw = await c.messages.with_raw_response.create(
            model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "a"}])
        assert raw.headers["anthropic-ratelimit-requests-limit"] == "2"
        assert raw.headers["anthropic-ratelimit-requests-remaining"] == "1"
        await create(c)
        with pytest.raises(anthropic.RateLimitError) as info:
            await create(c)
    h = info.value.response.headers
    assert h["anthropic-ratelimit-requests-remaining"] == "0"
    assert 0 < float(h["retry-after"]) <= 60
    assert h["anthropic-ratelimit-requests-reset"].endswith("Z")
    assert fake_server.stats()["window_limited"] == 1


async def test_tpm_window(fake_server):
    fake_server.configure(tpm=60)
    async with sdk(fake_server) as c:
        await create(c, text="short")
        with pytest.raises(anthropic.RateLimitError) as info:
            await create(c, text="word " * 200)
    assert "anthropic-ratelimit-tokens-remaining" in info.value.response.headers


async def test_timeout_holds_the_request(fake_server):
    fake_server.configure(timeout_rate=1.0, hang_s=10)
    async with sdk(fake_server, timeout=0.2) as c:
        with pytest.raises(anthropic.APITimeoutError):
            await create(c)
    assert fake_server.stats()["outcomes"]["timeout"] == 1


async def test_malformed_and_schema_break(fake_server):
    fake_server.script(["malformed", "schema_break", "truncated"])
    async with sdk(fake_server) as c:
        text = await create(c)
        broken = await create(c)
        cut = await create(c)
    assert text.content[0].type == "text" and text.stop_reason == "end_turn"
    assert not valid(SmallAnswer, broken.content[0].input) and "title" not in broken.content[0].input
    assert cut.stop_reason == "max_tokens" and cut.content[0].input == {}


async def test_control_endpoints(fake_server):
    async with sdk(fake_server) as c:
        await create(c)
    status, _, stats = await ahttp(fake_server.url + "/_stats")
    assert status == 200 and stats["requests"] == 1
    status, _, body = await ahttp(fake_server.url + "/_config", "POST", {"error_rate_529": 1.0, "script": ["ok"]})
    assert status == 200 and body["config"]["error_rate_529"] == 1.0
    status, _, _ = await ahttp(fake_server.url + "/_config", "POST", {"no_such_knob": 1})
    assert status == 400
    async with sdk(fake_server) as c:
        await create(c)  # the scripted "ok" comes before the 529 rate
        with pytest.raises(anthropic.InternalServerError):
            await create(c)
    status, _, _ = await ahttp(fake_server.url + "/_reset", "POST", {})
    assert status == 200 and fake_server.stats()["requests"] == 0


async def test_seeded_faults_are_reproducible():
    async def run() -> list[str]:
        async with FakeAnthropicServer(seed=7, error_rate_429=0.3, error_rate_529=0.2, schema_break_rate=0.2) as srv:
            async with sdk(srv) as c:
                seen = []
                for i in range(12):
                    try:
                        msg = await create(c, text=f"q{i}")
                        seen.append("ok" if valid(SmallAnswer, msg.content[0].input) else "bad")
                    except anthropic.APIStatusError as exc:
                        seen.append(str(exc.status_code))
                return seen

    first, second = await run(), await run()
    assert first == second
    assert len(set(first)) > 1


async def test_bedrock_invoke_route_shape(fake_server):
    status, headers, body = await ahttp(
        fake_server.url + "/model/anthropic.claude-haiku-4-5-20251001-v1%3A0/invoke", "POST",
        {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100, "tools": [TOOL], "tool_choice": CHOICE,
         "messages": [{"role": "user", "content": "hi there"}]},
        headers={"authorization": "AWS4-HMAC-SHA256 Credential=x"})
    assert status == 200
    assert body["model"] == "anthropic.claude-haiku-4-5-20251001-v1:0"
    assert body["content"][0]["type"] == "tool_use" and body["usage"]["input_tokens"] > 0
    assert headers["x-amzn-bedrock-input-token-count"] == str(body["usage"]["input_tokens"])
    fake_server.script(["429"])
    status, headers, body = await ahttp(
        fake_server.url + "/model/m/invoke", "POST",
        {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100,
         "messages": [{"role": "user", "content": "hi"}]}, headers={"authorization": "AWS4 x"})
    assert status == 429 and headers["x-amzn-ErrorType"].startswith("ThrottlingException")


async def test_message_batches(fake_server):
    async with sdk(fake_server) as c:
        batch = await c.messages.batches.create(requests=[
            {"custom_id": f"r{i}", "params": {"model": "claude-haiku-4-5", "max_tokens": 200, "tools": [TOOL],
                                              "tool_choice": CHOICE,
                                              "messages": [{"role": "user", "content": f"item {i}"}]}}
            for i in range(3)])
        assert batch.id.startswith("msgbatch_") and batch.processing_status == "in_progress"
        done = await c.messages.batches.retrieve(batch.id)
        assert done.processing_status == "ended" and done.request_counts.succeeded == 3
        results = [r async for r in await c.messages.batches.results(batch.id)]
    assert sorted(r.custom_id for r in results) == ["r0", "r1", "r2"]
    assert all(r.result.type == "succeeded" for r in results)
    total_out = sum(r.result.message.usage.output_tokens for r in results)
    assert fake_server.stats()["output_tokens"] == total_out


async def test_message_batches_like_the_api():
    def item(cid, text="hello"):
        return {"custom_id": cid, "params": {"model": "claude-haiku-4-5", "max_tokens": 200,
                                             "messages": [{"role": "user", "content": text}]}}

    async with FakeAnthropicServer(seed=2, batch_results_order="reversed", batch_polls=2,
                                   batch_script=["ok", "expired"]) as srv, sdk(srv) as c:
        with pytest.raises(anthropic.BadRequestError, match="not unique"):
            await c.messages.batches.create(requests=[item("a"), item("a")])
        with pytest.raises(anthropic.BadRequestError, match="custom_id"):
            await c.messages.batches.create(requests=[item("x" * 65)])
        bad_params = {"custom_id": "c", "params": {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": []}}
        batch = await c.messages.batches.create(requests=[item("a"), item("b"), bad_params])
        assert (await c.messages.batches.retrieve(batch.id)).processing_status == "in_progress"
        assert srv.stats()["output_tokens"] == 0  # nothing returned yet, nothing counted
        done = await c.messages.batches.retrieve(batch.id)
        assert done.processing_status == "ended" and (done.expires_at - done.created_at).total_seconds() == 86400
        assert (done.request_counts.succeeded, done.request_counts.expired, done.request_counts.errored) == (1, 1, 1)
        results = [r async for r in await c.messages.batches.results(batch.id)]
        assert [r.custom_id for r in results] == ["c", "b", "a"]  # params are checked while processing
        assert [r.result.type for r in results] == ["errored", "expired", "succeeded"]

        pending = await c.messages.batches.create(requests=[item("p1"), item("p2")])
        canceling = await c.messages.batches.cancel(pending.id)
        assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
        ended = await c.messages.batches.retrieve(pending.id)
        assert ended.processing_status == "ended" and ended.request_counts.canceled == 2


class Keywords(BaseModel):
    d: dt.date
    n: float = Field(ge=1, le=2)
    b: bool
    arr: list[int] = Field(min_length=2, max_length=2)
    opt: str | None = Field(min_length=30)
    c: Literal[5] = 5
    ref: Literal["c1", "c2", "c3"]


def test_synthesise_covers_the_schema_keywords():
    schema = tool_schema(Keywords)
    values = [synthesise(schema, f"k{i}", ["alpha", "beta"]) for i in range(12)]
    assert all(valid(Keywords, v) for v in values)
    assert all(len(v["arr"]) == 2 and v["c"] == 5 for v in values)
    assert {v["ref"] for v in values} == {"c1", "c2", "c3"}  # every allowed value, none other


def test_cli_prints_its_url_first():
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve().parent / "support" / "fake_anthropic.py"), "--port", "0", "--latency", "0.0", "--rpm", "0",
         "--tpm", "0", "--error-rate-429", "0", "--error-rate-529", "0", "--malformed-rate", "0",
         "--schema-break-rate", "0", "--timeout-rate", "0", "--seed", "1"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()  # blocks until the server is listening
        assert line.startswith("listening http://127.0.0.1:")
        url = line.split(" ", 1)[1]
        status, _, stats = http(url + "/_stats")
        assert status == 200 and stats["requests"] == 0 and stats["config"]["seed"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
