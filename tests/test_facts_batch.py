"""The full pass with SOULPRINT_FACTS_BATCH_API on: a worker built by build_runtime, the real
SDK against the fake server, the embedded broker and Postgres."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest

from soulprint.services.db import usage_for_job
from soulprint.services.llm import default_prices
from soulprint.settings import load_settings
from support.fake_anthropic import FakeAnthropicServer
from support.pipeline import import_and_wait, running

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-export.zip"


def test_batch_settings_are_read_from_the_environment(monkeypatch):
    assert load_settings().facts_batch_api is False
    monkeypatch.setenv("SOULPRINT_FACTS_BATCH_API", "1")
    monkeypatch.setenv("SOULPRINT_FACTS_BATCH_POLL_INTERVAL", "0")
    s = load_settings()
    assert s.facts_batch_api is True and s.facts_batch_poll_s == 0.0


async def test_full_pass_through_message_batches_completes_at_half_price(stack_settings, db):
    async with FakeAnthropicServer(seed=21, batch_polls=2) as server:
        # A model id of this test's own (priced as Haiku 4.5): the shared response
        # cache holds other tests' answers to the same prompts.
        llm = dataclasses.replace(stack_settings.llm, api_key="test-key", base_url=server.url,
                                  fast_model=f"claude-haiku-4-5-batch-{uuid.uuid4().hex[:8]}")
        settings = dataclasses.replace(stack_settings, app_id=f"batch-{uuid.uuid4().hex[:8]}",
                                       topic_prefix=f"b{uuid.uuid4().hex[:8]}", facts_batch_api=True,
                                       facts_batch_poll_s=0.0, llm=llm)
        async with running(settings) as rt:
            job = await import_and_wait(rt, f"batch-{uuid.uuid4().hex[:8]}", SAMPLE)
        stats = server.stats()

    assert job.quick_status == "ready", job.quick_error
    assert job.full_pass_status == "complete", job.full_pass_error
    assert job.extraction_done == job.extraction_total > 0 and job.facts_total > 0
    assert stats["batches"] >= 1 and stats["by_route"]["batches"] >= 1

    # The facts stage was paid at the batch price, and the job's status shows it.
    usage = await usage_for_job(db.pool, job.job_id)
    facts = usage["stages"]["facts"]
    (key,) = facts["by_model"]
    assert key.startswith("anthropic-batch/claude-haiku-4-5-batch-")
    price = default_prices()["claude-haiku-4-5"]
    full = (facts["input_tokens"] * price.input + facts["output_tokens"] * price.output
            + facts["cache_creation_input_tokens"] * price.cache_write
            + facts["cache_read_input_tokens"] * price.cache_read) / 1e6
    assert facts["requests"] == stats["by_route"]["batches"]
    assert facts["cost_usd"] == pytest.approx(full / 2, rel=1e-6)
    assert usage["total"]["cost_usd"] > facts["cost_usd"]  # the other stages, at the normal price

    # Every submitted request was read and claimed: nothing left to resume.
    left = await db.pool.fetchval("SELECT count(*) FROM llm_batch_requests WHERE endpoint = $1",
                                  f"anthropic:{server.url}")
    assert left == 0
