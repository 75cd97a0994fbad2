"""Pytest fixtures and helpers for the LLM layer's tests.

Import the fixtures into a test module (``from support.fixtures_llm
import fake_server``) so pytest registers them there; tests/conftest.py
belongs to the lead.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, AsyncIterator, Literal

import pytest
from pydantic import BaseModel, Field

from soulprint.models.llm import LLMRequest, tool_schema
from soulprint.services.llm.config import LLMConfig
from soulprint.services.llm.ratelimit import AdaptiveLimiter
from support.fake_anthropic import FakeAnthropicServer


class Meta(BaseModel):
    ok: bool


# The probe task's answer: a little of every shape the real answer models use
# (no docstring: it would become the schema's description).
class SmallAnswer(BaseModel):
    title: str
    tags: list[str]
    score: int = Field(ge=0, le=10)
    kind: Literal["person", "place"]
    meta: Meta


SMALL_SCHEMA: dict[str, Any] = tool_schema(SmallAnswer)


def fast_config(url: str | None = None, **overrides: Any) -> LLMConfig:
    """Fast settings: tiny backoffs so no test sleeps more than a few hundredths of a second."""
    base = LLMConfig(
        provider="anthropic", api_key="test-key", base_url=url, timeout_s=5.0, max_attempts=4,
        backoff_base_s=0.005, backoff_max_s=0.02, max_wait_s=5.0, prompt_cache_min_chars=0,
        bedrock_region="us-east-1", bedrock_endpoint_url=url,
    )
    return replace(base, **overrides)


def fresh_limiter(initial: int = 8, max_limit: int = 64) -> AdaptiveLimiter:
    """A limiter of the test's own, so one test's 429s do not shrink the next test's limit."""
    return AdaptiveLimiter(initial, max_limit, name="test")


def small_request(text: str = "Tell me about Lisbon, Python and the sea", **kw: Any) -> LLMRequest:
    args: dict[str, Any] = dict(task="probe", system="You answer with the tool.",
                                messages=[{"role": "user", "content": text}], answer=SmallAnswer,
                                schema_name="record_probe", max_tokens=1024, job_id="job-1", stage="probe")
    args.update(kw)
    return LLMRequest(**args)


def valid(answer: type[BaseModel], data: Any) -> bool:
    """Whether ``data`` validates against the answer model."""
    try:
        answer.model_validate(data)
    except ValueError:
        return False
    return True


@pytest.fixture
async def fake_server() -> AsyncIterator[FakeAnthropicServer]:
    async with FakeAnthropicServer(seed=1) as srv:
        yield srv
