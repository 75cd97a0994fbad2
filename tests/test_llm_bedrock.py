"""BedrockClient: real boto3 (endpoint_url → the fake server's InvokeModel route)."""

from __future__ import annotations

import pytest

from soulprint.domain.prompts.quick_sections import quick_sections_request
from soulprint.models.sections import SectionsAnswer
from soulprint.services.llm.accounting import MemoryUsageSink
from soulprint.services.llm.bedrock_provider import BedrockClient, make_boto_client
from soulprint.services.llm.cache import MemoryCache
from soulprint.services.llm.factory import build_llm_client
from support.fixtures_llm import SmallAnswer, fake_server, fast_config, fresh_limiter, small_request, valid

__all__ = ["fake_server"]

MODEL = "anthropic.claude-haiku-4-5-20251001-v1:0"


def bedrock_for(srv, *, sink=None, cache=None, limiter=None, **cfg) -> BedrockClient:
    cfg.setdefault("cache_enabled", cache is not None)
    config = fast_config(srv.url, provider="bedrock", **cfg)
    # Dummy credentials: the fake accepts any SigV4 signature.
    boto = make_boto_client(config, aws_access_key_id="AKIDTEST", aws_secret_access_key="secret")
    return BedrockClient(config, sink=sink, cache=cache, limiter=limiter or fresh_limiter(), boto_client=boto)


async def test_structured_answer_via_invoke_model(fake_server):
    client = bedrock_for(fake_server)
    res = await client.complete(small_request())
    assert res.ok, res.error
    assert res.provider == "bedrock" and res.model == MODEL
    assert valid(SmallAnswer, res.data)
    assert res.usage.requests == 1 and res.usage.cost_usd > 0  # priced as Haiku 4.5
    log = fake_server.requests_log[-1]
    assert log["route"] == "bedrock" and log["model"] == MODEL
    assert log["body"]["anthropic_version"] == "bedrock-2023-05-31" and "model" not in log["body"]


async def test_quick_sections_on_bedrock(fake_server):
    client = bedrock_for(fake_server)
    res = await client.complete(quick_sections_request({"user_id": "u", "samples": [], "profile": {}}))
    assert res.ok, res.error
    assert valid(SectionsAnswer, res.data)


async def test_throttling_exception_is_retried(fake_server):
    fake_server.configure(retry_after=0.01, script=["429", "ok"])
    limiter = fresh_limiter()
    client = bedrock_for(fake_server, limiter=limiter)
    res = await client.complete(small_request())
    assert res.ok, res.error
    assert res.attempts == 2 and res.usage.throttled == 1
    assert limiter.decreases == 1


async def test_service_unavailable_is_retried_then_contained(fake_server):
    fake_server.configure(error_rate_529=1.0)  # served as 503 ServiceUnavailableException
    client = bedrock_for(fake_server, max_attempts=3)
    res = await client.complete(small_request())
    assert not res.ok and res.error_kind == "overloaded" and res.attempts == 3
    assert "ServiceUnavailableException" in res.error
    assert fake_server.stats()["status"] == {"503": 3}


async def test_schema_repair_on_bedrock(fake_server):
    fake_server.configure(schema_break_rate=1.0)
    client = bedrock_for(fake_server)
    res = await client.complete(small_request())
    assert not res.ok and res.error_kind == "schema"
    assert fake_server.stats()["requests"] == 2


async def test_read_timeout_is_contained(fake_server):
    fake_server.configure(timeout_rate=1.0, hang_s=10)
    client = bedrock_for(fake_server, timeout_s=0.3, max_attempts=2)
    res = await client.complete(small_request())
    assert not res.ok and res.error_kind == "timeout" and res.attempts == 2
    assert fake_server.stats()["outcomes"]["timeout"] == 2


async def test_validation_error_is_not_retried(fake_server):
    client = bedrock_for(fake_server)
    req = small_request()
    req.messages = [{"role": "assistant", "content": "I start"}]  # first turn must be the user's
    res = await client.complete(req)
    assert not res.ok and res.error_kind == "api" and res.attempts == 1
    assert "ValidationException" in res.error


async def test_bedrock_accounting_and_cache(fake_server):
    fake_server.configure(retry_after=0.01, script=["429", "schema_break", "ok"])
    sink = MemoryUsageSink()
    client = bedrock_for(fake_server, sink=sink, cache=MemoryCache())
    a = await client.complete(small_request("one"))
    b = await client.complete(small_request("two"))
    c = await client.complete(small_request("one"))
    assert a.ok and b.ok and c.cached
    stats = fake_server.stats()
    total = sink.total()
    assert total.requests == stats["status"]["200"] == 3
    assert total.input_tokens == stats["input_tokens"] and total.output_tokens == stats["output_tokens"]
    assert total.throttled == 1 and total.cache_hits == 1


def test_factory_builds_bedrock():
    client = build_llm_client(fast_config(None, provider="bedrock"), limiter=fresh_limiter(),
                              boto_client=object())
    assert isinstance(client, BedrockClient)


@pytest.mark.parametrize("code,kind,retryable", [
    ("ThrottlingException", "rate_limited", True),
    ("ModelNotReadyException", "overloaded", True),
    ("ServiceUnavailableException", "overloaded", True),
    ("ModelTimeoutException", "timeout", True),
    ("InternalServerException", "api", True),
    ("AccessDeniedException", "api", False),
    ("ServiceQuotaExceededException", "api", False),
])
def test_error_code_mapping(code, kind, retryable):
    from botocore.exceptions import ClientError

    from soulprint.services.llm.bedrock_provider import _client_error

    status = {"ThrottlingException": 429, "ModelNotReadyException": 429, "ServiceUnavailableException": 503,
              "ModelTimeoutException": 408, "InternalServerException": 500}.get(code, 400)
    exc = ClientError({"Error": {"Code": code, "Message": "m"},
                       "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {"retry-after": "2"}}},
                      "InvokeModel")
    err = _client_error(exc)
    assert (err.kind, err.retryable) == (kind, retryable)
    if kind in ("rate_limited", "overloaded"):
        assert err.retry_after == 2.0
