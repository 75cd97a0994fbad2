"""Re-embedding after a model change (issue 9 item 2): a worker configured with a new embedding
space re-embeds people's current imports in the background, keeps the old space's vectors until
the new one is complete, then deletes them; search reads the new space only.

Each test has a database and topics of its own on the session's Postgres and broker: a worker
whose space differs from the session worker's would otherwise re-embed everyone's imports, and
the session worker would embed them back. The import runs on a worker with space A (feature
hashing, 256 dimensions), then a worker with space B (64 dimensions) takes over, as after a
restart with a new SOULPRINT_EMBEDDING_DIMENSIONS.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path

from soulprint.agents import embed, reconciler
from soulprint.models.jobs import EmbeddingStatus
from support.fake_bedrock_embeddings import FakeBedrockEmbeddings, aws_environment
from support.pipeline import import_and_wait, running
from support.waiting import wait_until

EXPORT = Path(__file__).resolve().parent / "fixtures" / "exports" / "chatgpt_classic"
QUERY = "what did I decide about the pipeline"


def _worker_settings(stack_settings, name: str, dimensions: int | None, provider: str = "hash",
                     embedding: dict | None = None, **overrides):
    """The session's infrastructure with a database, topics and consumer groups of ``name``."""
    base, _, tail = stack_settings.database_url.rpartition("/")
    query = tail.partition("?")[2]
    return dataclasses.replace(
        stack_settings,
        database_url=f"{base}/{name}" + (f"?{query}" if query else ""),
        app_id=f"{stack_settings.app_id}-{name}", topic_prefix=name,
        embedding=dataclasses.replace(stack_settings.embedding, provider=provider, dimensions=dimensions,
                                      **(embedding or {})),
        **overrides,
    )



async def spaces_of(db, job_id: str) -> dict[str, int]:
    rows = await db.pool.fetch("SELECT model, count(*) AS n FROM chunk_embeddings WHERE job_id = $1 GROUP BY model",
                               job_id)
    return {r["model"]: r["n"] for r in rows}


async def replaces(db, job_id: str) -> str | None:
    return await db.pool.fetchval("SELECT embedding_replaces FROM import_jobs WHERE job_id = $1", job_id)


async def vector_search(rt, user_id: str):
    (query_vector,) = await rt.embedder.embed([QUERY], "query")
    async with rt.db.reader.session(user_id) as conn:
        return await rt.db.search.search(conn, user_id, QUERY, query_vector, rt.embedder.space, 10)


def untouched(job) -> tuple:
    """What a re-embedding must leave as it was: the import, its passes, their times."""
    return (job.status, job.finished_at, job.quick_status, job.quick_ready_at, job.full_pass_status,
            job.full_pass_stage, job.full_pass_finished_at, job.chunks_micro, job.facts_total)


async def test_a_model_change_reembeds_current_imports_and_then_drops_the_old_space(stack_settings):
    name = f"reembed_{uuid.uuid4().hex[:8]}"
    # A long interval: the pass at the worker's start is the one that notices the change.
    settings_a = _worker_settings(stack_settings, name, 256)
    settings_b = _worker_settings(stack_settings, name, 64, reconcile_interval_s=3600.0)
    alice, bob = f"alice-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"

    async with running(settings_a) as rt:
        space_a = rt.embedder.space.space_id
        retired = await import_and_wait(rt, alice, EXPORT)  # alice imports twice: this one is retired
        current = await import_and_wait(rt, alice, EXPORT)
        other = await import_and_wait(rt, bob, EXPORT)
        for job in (current, other):
            assert job.embedding_status == EmbeddingStatus.COMPLETE and job.embedding_model == space_a
            assert await spaces_of(rt.db, job.job_id) == {space_a: job.embedding_total}
        retired = await rt.db.jobs.get(retired.job_id)
        soulprints = {u: await rt.db.soulprints.get(u) for u in (alice, bob)}

    async with running(settings_b) as rt:
        space_b = rt.embedder.space.space_id
        assert space_b != space_a
        for job in (current, other):
            done = await wait_until(lambda: rt.db.jobs.get(job.job_id),
                                    lambda j: j.embedding_model == space_b and j.embedding_status != "pending"
                                    and j.embedding_status != "processing",
                                    what=f"{job.job_id} re-embedded in {space_b}")
            assert done.embedding_status == EmbeddingStatus.COMPLETE, done.embedding_error
            assert done.embedding_tiers == ["micro"]
            assert done.embedded == done.embedding_total == job.embedding_total == job.chunks_micro > 0
            assert done.embedding_redrives == 0 and done.embedding_error is None
            assert await spaces_of(rt.db, job.job_id) == {space_b: done.embedding_total}  # A's vectors are gone
            assert {(r["dims"], r["tier"]) for r in await rt.db.embeddings.rows(job.job_id, space_b)} == {(64, "micro")}
            assert await replaces(rt.db, job.job_id) is None
            assert untouched(done) == untouched(job)
        for user in (alice, bob):
            assert await rt.db.soulprints.get(user) == soulprints[user]

        # The retired import is not re-embedded (its rows went when the newer one completed).
        assert await rt.db.jobs.get(retired.job_id) == retired
        assert await spaces_of(rt.db, retired.job_id) == {}

        # Search reads space B only, and finds the person's chunks there.
        result, rankings = await vector_search(rt, alice)
        assert result.space == space_b and result.job_id == current.job_id
        assert result.candidates["vector"] > 0
        chunk_ids = {r["chunk_id"] for r in await rt.db.embeddings.rows(current.job_id, space_b)}
        assert {c.chunk_id for c in rankings["vector"]} <= chunk_ids

        # Idempotent: another pass (or another worker's) restarts nothing; a replayed restart is refused.
        before = await rt.db.embeddings.rows(current.job_id, space_b)
        assert await reconciler.reconcile_once(rt) == 0
        assert await rt.db.jobs.restart_embedding(current.job_id, ["micro"], rt.embedder.space) is None
        assert await rt.db.embeddings.rows(current.job_id, space_b) == before


async def test_an_interrupted_reembedding_resumes_and_keeps_the_old_space_until_done(stack_settings, monkeypatch):
    name = f"reembed_{uuid.uuid4().hex[:8]}"
    settings_a = _worker_settings(stack_settings, name, 256)
    settings_b = _worker_settings(stack_settings, name, 64, reconcile_interval_s=3600.0, stall_after_s=0.2)
    user = f"carol-{uuid.uuid4().hex[:6]}"

    async with running(settings_a) as rt:
        space_a = rt.embedder.space.space_id
        job = await import_and_wait(rt, user, EXPORT)
        conversations = {r["conversation_id"] for r in await rt.db.pool.fetch(
            "SELECT conversation_id FROM conversations WHERE job_id = $1", job.job_id)}
        assert len(conversations) > 1 and job.embedding_status == EmbeddingStatus.COMPLETE

    # The new worker embeds the first conversation it is sent, then "dies" with the rest:
    # their events were taken, their vectors never written.
    real, seen = embed.embed_job, set()

    async def crashing(rt_, job_id, user_id, conversation_ids):
        first = not seen
        seen.update(conversation_ids)
        if first:
            await real(rt_, job_id, user_id, conversation_ids[:1])

    monkeypatch.setattr(embed, "embed_job", crashing)
    async with running(settings_b) as rt:
        space_b = rt.embedder.space.space_id
        async def taken():
            return set(seen)

        await wait_until(taken, lambda s: s == conversations,
                         what="every re-driven conversation taken by the crashing worker")
        partial = await wait_until(lambda: rt.db.jobs.get(job.job_id), lambda j: j.embedded > 0,
                                   what="the first conversation's vectors")
        assert partial.embedding_model == space_b and partial.embedding_status == EmbeddingStatus.PROCESSING
        assert 0 < partial.embedded < partial.embedding_total == job.embedding_total
        # The old space stays complete beside the new one's first vectors; search reads B only.
        assert await spaces_of(rt.db, job.job_id) == {space_a: job.embedding_total, space_b: partial.embedded}
        assert await replaces(rt.db, job.job_id) == space_a
        result, rankings = await vector_search(rt, user)
        assert result.space == space_b and 0 < result.candidates["vector"] <= partial.embedded
        assert any(n.startswith("vector:") for n in result.notes)  # the vector side is said to be partial

        # The worker is back: the stalled embedding is re-driven from the rows and completes.
        monkeypatch.setattr(embed, "embed_job", real)
        await wait_until(lambda: reconciler.reconcile_once(rt), lambda acted: acted >= 1,
                         what="the reconciler to find the stalled re-embedding")
        done = await wait_until(lambda: rt.db.jobs.get(job.job_id), lambda j: j.embedding_status == "complete",
                                what="the resumed re-embedding")
        assert done.embedded == done.embedding_total == job.embedding_total and done.embedding_model == space_b
        assert await spaces_of(rt.db, job.job_id) == {space_b: job.embedding_total}
        assert await replaces(rt.db, job.job_id) is None
        assert untouched(done) == untouched(job)

        # A replay of every chunk event changes nothing.
        before = await rt.db.embeddings.rows(job.job_id, space_b)
        await embed.embed_job(rt, job.job_id, user, sorted(conversations))
        assert await rt.db.embeddings.rows(job.job_id, space_b) == before
        again = await rt.db.jobs.get(job.job_id)
        assert (again.embedding_status, again.embedded) == (EmbeddingStatus.COMPLETE, done.embedded)


async def test_rolling_the_model_back_before_the_new_space_completes_finds_the_old_vectors(stack_settings):
    """A → B (interrupted) → A: A's vectors were kept, so A is complete at once and B's partial rows go."""
    name = f"reembed_{uuid.uuid4().hex[:8]}"
    settings_a = _worker_settings(stack_settings, name, 256, reconcile_interval_s=3600.0)
    user = f"dave-{uuid.uuid4().hex[:6]}"
    async with running(settings_a) as rt:
        space_a = rt.embedder.space
        job = await import_and_wait(rt, user, EXPORT)
        # What a worker with space B did before it was stopped: the restart and one vector.
        space_b = dataclasses.replace(space_a, dimensions=64)
        restarted = await rt.db.jobs.restart_embedding(job.job_id, ["micro"], space_b)
        assert (restarted.embedding_status, restarted.embedded, restarted.embedding_model) == (
            EmbeddingStatus.PENDING, 0, space_b.space_id)
        (chunk_id, *_) = [r["chunk_id"] for r in await rt.db.embeddings.rows(job.job_id, space_a.space_id)]
        await rt.db.jobs.record_embeddings(job.job_id, space_b, [chunk_id], [[1.0] + [0.0] * 63])
        # Two restarts at once (two reconcilers): one wins.
        both = await asyncio.gather(*(rt.db.jobs.restart_embedding(job.job_id, ["micro"], space_a)
                                      for _ in range(2)))
        (back,) = [j for j in both if j is not None]
        assert back.embedding_status == EmbeddingStatus.COMPLETE
        assert back.embedded == back.embedding_total == job.embedding_total
        assert await spaces_of(rt.db, job.job_id) == {space_a.space_id: job.embedding_total}
        assert await replaces(rt.db, job.job_id) is None


async def test_a_change_of_provider_reembeds_through_bedrock_cohere(stack_settings, monkeypatch):
    """hash → Cohere Embed on Bedrock (the real boto3 against the loopback fake): the stage embeds
    chunks as search_document in batches of at most 96, the query as search_query."""
    name = f"reembed_{uuid.uuid4().hex[:8]}"
    user = f"erin-{uuid.uuid4().hex[:6]}"
    aws_environment(monkeypatch)
    async with running(_worker_settings(stack_settings, name, 256)) as rt:
        job = await import_and_wait(rt, user, EXPORT)
        space_a = rt.embedder.space.space_id
    async with FakeBedrockEmbeddings() as bedrock:
        cohere = {"bedrock_endpoint_url": bedrock.url, "bedrock_region": "us-east-1", "bedrock_model": None}
        async with running(_worker_settings(stack_settings, name, None, "bedrock-cohere", cohere,
                                           reconcile_interval_s=3600.0)) as rt:
            space = rt.embedder.space
            assert space.space_id == "bedrock-cohere/cohere.embed-english-v3/1024" != space_a
            done = await wait_until(lambda: rt.db.jobs.get(job.job_id),
                                    lambda j: j.embedding_model == space.space_id and j.embedding_status == "complete",
                                    what="the import re-embedded through Bedrock")
            assert done.embedded == done.embedding_total == job.embedding_total
            assert await spaces_of(rt.db, job.job_id) == {space.space_id: job.embedding_total}
            assert {r["dims"] for r in await rt.db.embeddings.rows(job.job_id, space.space_id)} == {1024}
            assert set(bedrock.stats["input_types"]) == {"search_document"}
            assert max(bedrock.stats["batch_sizes"]) <= 96
            result, _ = await vector_search(rt, user)
            assert result.space == space.space_id and result.candidates["vector"] > 0
            assert bedrock.stats["input_types"]["search_query"] == 1
