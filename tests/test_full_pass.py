"""The full pass: facts → consolidated → memory → v2 sections, over the real broker and Postgres."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest

from soulprint.agents.reconciler import reconcile_once
from soulprint.runtime import build_runtime
from soulprint.services.db import PostgresCache, PostgresUsageSink
from soulprint.services.llm.anthropic_provider import AnthropicClient
from support.fake_anthropic import FakeAnthropicServer
from support.fixtures_llm import fast_config, fresh_limiter
from support.llm_wrappers import FailingLLM, SlowLLM, llm_swapped
from support.pipeline import import_and_wait, publish_import
from support.waiting import wait_until
from soulprint.reporting import job_finished

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-export.zip"
MEMORY_HEADINGS = ("## Preferences", "## Projects", "## Important Dates", "## Beliefs & Values",
                   "## Decisions & Context")


async def fact_texts(db, job_id: str) -> list[tuple[str, str, int, str]]:
    """Facts by what they say and where they come from (conversation, chunk position), not by ids."""
    rows = await db.pool.fetch(
        """
        SELECT f.conversation_id, f.category, k.chunk_index, f.text
          FROM facts f JOIN conversation_chunks k ON k.job_id = f.job_id AND k.chunk_id = f.chunk_id
         WHERE f.job_id = $1 ORDER BY 1, 3, 2, 4
        """,
        job_id,
    )
    return [tuple(r) for r in rows]


async def test_offline_full_pass_writes_memory_and_v2_sections(runtime, db, user_id):
    job = await import_and_wait(runtime, user_id, SAMPLE)

    assert job.full_pass_status == "complete", job.full_pass_error
    assert job.extraction_done == job.extraction_total == job.chunks_medium
    assert job.facts_total > 0 and 0 < job.consolidated_total <= job.facts_total
    memory = await db.soulprints.get_memory(job.job_id)
    assert all(h in memory["memory_md"] for h in MEMORY_HEADINGS)
    soulprint = await db.soulprints.get(user_id)
    assert soulprint["version"] == 2 and soulprint["memory_md"] == memory["memory_md"]
    assert soulprint["soulprint_text"].rstrip().endswith(memory["memory_md"].rstrip())
    versions = await db.pool.fetch("SELECT version FROM soulprint_versions WHERE job_id = $1 ORDER BY 1",
                                   job.job_id)
    assert [r["version"] for r in versions] == [1, 2]


async def test_small_export_skips_the_full_pass(runtime, db, user_id, tmp_path):
    small = tmp_path / "two.json"
    small.write_text('[{"id": "c1", "title": "Hi", "create_time": 1700000000, "current_node": "b",'
                     ' "mapping": {"a": {"id": "a", "parent": null, "message": null},'
                     ' "b": {"id": "b", "parent": "a", "message": {"id": "b", "author": {"role": "user"},'
                     ' "create_time": 1700000000, "content": {"content_type": "text",'
                     ' "parts": ["I prefer short answers."]}}}}}]')
    job = await import_and_wait(runtime, user_id, small)
    assert job.full_pass_status == "skipped"
    assert job.quick_status == "ready"


async def test_same_import_twice_leaves_the_same_facts(runtime, db, user_id):
    first = await import_and_wait(runtime, user_id, SAMPLE)
    first_facts = await fact_texts(db, first.job_id)  # retired once the second import is current
    await publish_import(runtime.settings, user_id, SAMPLE, job_id=first.job_id)  # redelivery
    second = await import_and_wait(runtime, user_id, SAMPLE)

    assert first.full_pass_status == second.full_pass_status == "complete"
    assert first_facts == await fact_texts(db, second.job_id)
    again = await db.jobs.get(first.job_id)
    assert again.facts_total == first.facts_total


@pytest.mark.parametrize("stage", ["memory", "sections_v2"])
async def test_failing_memory_or_sections_call_keeps_v1(runtime, db, user_id, stage):
    with llm_swapped(runtime, FailingLLM(runtime.llm, {stage})):
        job = await import_and_wait(runtime, user_id, SAMPLE)

    assert job.status == "complete" and job.quick_status == "ready"
    assert job.full_pass_status == "failed"
    assert "schema" in job.full_pass_error and "\n" not in job.full_pass_error
    soulprint = await db.soulprints.get(user_id)
    assert soulprint["version"] == 1 and soulprint["memory_md"] is None


async def test_a_fifth_of_answers_rate_limited_or_overloaded_still_completes(runtime, db, user_id):
    async with FakeAnthropicServer(seed=11, error_rate_429=0.1, error_rate_529=0.1, retry_after=0.01,
                                   overloaded_retry_after=0.01) as server:
        client = AnthropicClient(fast_config(server.url, max_attempts=8), sink=PostgresUsageSink(db.pool),
                                 cache=PostgresCache(db.pool), limiter=fresh_limiter())
        try:
            with llm_swapped(runtime, client):
                job = await import_and_wait(runtime, user_id, SAMPLE)
        finally:
            await client.aclose()

    assert job.quick_status == "ready", job.quick_error
    assert job.full_pass_status == "complete", job.full_pass_error
    # The fake answers name only the chunks of their own request: facts, none dropped.
    assert job.facts_total > 0 and job.facts_dropped == 0
    stats = server.stats()
    assert stats["status"]["429"] + stats["status"]["529"] > 0


async def test_killed_worker_mid_full_pass_restarts_and_completes_exactly(runtime, db, stack_settings):
    """Stop a worker in the middle of fact extraction; a new worker (and the reconciler)
    finishes the job with exactly the facts an uninterrupted run produces."""
    reference = await import_and_wait(runtime, f"ref-{uuid.uuid4().hex[:8]}", SAMPLE)

    settings = dataclasses.replace(stack_settings, app_id=f"kill-{uuid.uuid4().hex[:8]}",
                                   topic_prefix=f"k{uuid.uuid4().hex[:8]}", facts_batch_size=4,
                                   facts_concurrency=1)
    user = f"kill-{uuid.uuid4().hex[:8]}"
    first = await build_runtime(settings)
    first.llm = SlowLLM(first.llm, delay_s=0.05)
    await first.start()
    try:
        job_id = await publish_import(settings, user, SAMPLE)
        await wait_until(lambda: db.jobs.get(job_id),
                         lambda j: j is not None and j.full_pass_stage == "facts"
                         and 0 < j.extraction_done < j.extraction_total,
                         what="extraction under way")
    finally:
        await first.stop()  # the worker dies mid-pass: in-flight batches are lost
        await first.db.close()

    # A job is "stalled" after one second without progress; the reconciler is
    # called on every poll and re-drives only when that holds.
    second = await build_runtime(dataclasses.replace(settings, stall_after_s=1.0, max_redrives=50))
    await second.start()
    try:
        async def progress():
            await reconcile_once(second)  # as the periodic timer would, without waiting for it
            return await db.jobs.get(job_id)

        job = await wait_until(progress, job_finished, what="the restarted job to finish")
    finally:
        await second.stop()
        await second.db.close()

    assert job.full_pass_status == "complete", job.full_pass_error
    assert await fact_texts(db, job_id) == await fact_texts(db, reference.job_id)
