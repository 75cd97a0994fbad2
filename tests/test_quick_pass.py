"""The quick pass through the pipeline: offline, and through the real Anthropic SDK
against the protocol-faithful fake server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from soulprint.services.db import PostgresCache, PostgresUsageSink, usage_for_job
from soulprint.services.llm.anthropic_provider import AnthropicClient
from support.fake_anthropic import FakeAnthropicServer
from support.fixtures_llm import fast_config, fresh_limiter
from support.llm_wrappers import llm_swapped
from support.pipeline import import_and_wait

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-export.zip"
SECTION_HEADINGS = ("# SOUL", "# IDENTITY", "# USER", "# AGENTS", "# TOOLS")


@pytest.fixture(scope="module")
def small_export(data_root) -> Path:
    """12 conversations: below the full pass's minimum, so only the quick pass calls the LLM."""
    out = data_root / "small-export.json"
    if not out.exists():
        subprocess.run([sys.executable, str(REPO / "bench" / "generate_export.py"), "--out", str(out),
                        "--conversations", "12", "--seed", "2"], check=True, capture_output=True)
    return out


@pytest.fixture
async def fake_llm(runtime, db):
    """Point the running worker's LLM layer at a fake Anthropic server, through the real SDK."""
    async with FakeAnthropicServer(seed=7) as server:
        client = AnthropicClient(fast_config(server.url), sink=PostgresUsageSink(db.pool),
                                 cache=PostgresCache(db.pool), limiter=fresh_limiter())
        try:
            with llm_swapped(runtime, client):
                yield server
        finally:
            await client.aclose()


async def test_offline_quick_pass_is_ready_and_labelled(runtime, db, user_id):
    job = await import_and_wait(runtime, user_id, SAMPLE)

    assert job.quick_status == "ready" and job.quick_ready_at is not None
    soulprint = await db.soulprints.get(user_id)
    assert soulprint["offline"] is True
    text = soulprint["soulprint_text"]
    assert all(h in text for h in SECTION_HEADINGS)
    assert "Generated offline" in text
    # plausible for the sample's persona (samples/README.md)
    assert "Maya" in soulprint["user_md"]
    assert "Python" in soulprint["tools_md"] or "PostgreSQL" in soulprint["tools_md"]


async def test_quick_pass_through_the_sdk_counts_every_token(runtime, db, user_id, small_export, fake_llm):
    job = await import_and_wait(runtime, user_id, small_export)

    assert job.quick_status == "ready", job.quick_error
    assert job.full_pass_status == "skipped"
    soulprint = await db.soulprints.get(user_id)
    assert soulprint["offline"] is False and soulprint["version"] == 1
    stats = fake_llm.stats()
    usage = (await usage_for_job(db.pool, job.job_id))["total"]
    assert usage["requests"] == stats["status"]["200"] >= 1
    for key in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        assert usage[key] == stats[key], key


async def test_second_identical_import_is_served_from_the_cache(runtime, db, user_id, small_export, fake_llm):
    first = await import_and_wait(runtime, user_id, small_export)
    requests_after_first = fake_llm.stats()["requests"]

    second = await import_and_wait(runtime, user_id, small_export)

    assert first.quick_status == second.quick_status == "ready"
    assert fake_llm.stats()["requests"] == requests_after_first
    usage = (await usage_for_job(db.pool, second.job_id))["total"]
    assert usage["requests"] == 0 and usage["cache_hits"] >= 1 and usage["cost_usd"] == 0


async def test_schema_breaking_answers_get_one_repair_then_fail_the_quick_pass(
        runtime, db, user_id, small_export, fake_llm):
    fake_llm.configure(schema_break_rate=1.0)

    job = await import_and_wait(runtime, user_id, small_export)

    assert job.status == "complete"  # the import itself is intact
    assert job.quick_status == "failed"
    assert "invalid structured answer after repair" in job.quick_error
    assert "\n" not in job.quick_error
    assert fake_llm.stats()["requests"] == 2  # the answer and one repair
    assert await db.soulprints.get(user_id) is None


@pytest.mark.parametrize("storm", [["429", "429", "429"], ["529", "529"]])
async def test_rate_limits_and_overloads_are_retried(runtime, db, user_id, small_export, fake_llm, storm):
    fake_llm.configure(retry_after=0.01, overloaded_retry_after=0.01, script=storm)

    job = await import_and_wait(runtime, user_id, small_export)

    assert job.quick_status == "ready", job.quick_error
    stats = fake_llm.stats()
    assert stats["status"][storm[0]] == len(storm)
    usage = (await usage_for_job(db.pool, job.job_id))["total"]
    assert usage["throttled"] == len(storm)


async def test_timeouts_end_in_a_contained_failure(runtime, db, user_id, small_export):
    async with FakeAnthropicServer(seed=3, timeout_rate=1.0, hang_s=5.0) as server:
        client = AnthropicClient(fast_config(server.url, timeout_s=0.2, max_attempts=2),
                                 sink=PostgresUsageSink(db.pool), cache=None, limiter=fresh_limiter())
        try:
            with llm_swapped(runtime, client):
                job = await import_and_wait(runtime, user_id, small_export)
        finally:
            await client.aclose()

    assert job.quick_status == "failed"
    assert "tim" in job.quick_error.lower()
    assert server.stats()["requests"] == 2
