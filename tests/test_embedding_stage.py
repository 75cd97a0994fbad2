"""The embedding stage on the embedded stack: every chunk of the embedded tiers gets one
vector of the current space, redelivery changes nothing, progress is in the status row.

The session's stack embeds with the runtime's configured provider (`hash` in
tests: tests/conftest.py); one test runs the default local model for real.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from soulprint.agents import embed, reconciler
from soulprint.agents.flow import emit
from soulprint.models.events import ConversationChunked
from soulprint.models.jobs import EmbeddingStatus
from soulprint.reporting import job_json
from soulprint.runtime import build_configured_embedder
from soulprint.services.embeddings import DEFAULT_LOCAL_MODEL, EmbeddingError
from soulprint.settings import EmbeddingConfig
from support.pipeline import import_and_wait, publish_import
from support.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
EXPORT = REPO / "tests" / "fixtures" / "exports" / "chatgpt_classic"


async def micro_ids(db, job_id: str) -> set[str]:
    rows = await db.pool.fetch(
        "SELECT chunk_id::text AS c FROM conversation_chunks WHERE job_id = $1 AND tier = 'micro'", job_id
    )
    return {r["c"] for r in rows}


async def test_every_micro_chunk_has_one_vector_and_redelivery_changes_nothing(runtime, db, user_id):
    space = runtime.embedder.space
    job = await import_and_wait(runtime, user_id, EXPORT)
    assert job.status == "complete", job.error

    assert job.embedding_status == EmbeddingStatus.COMPLETE, job.embedding_error
    assert job.embedding_model == space.space_id and job.embedding_tiers == ["micro"]
    assert job.embedding_total == job.chunks_micro > 0
    assert job.embedded == job.embedding_total
    rows = await db.embeddings.rows(job.job_id, space.space_id)
    assert sorted(r["chunk_id"] for r in rows) == sorted(await micro_ids(db, job.job_id))  # one each
    assert {(r["tier"], r["dimensions"], r["dims"]) for r in rows} == {("micro", space.dimensions, space.dimensions)}
    out = job_json(job)
    assert out["embedding_status"] == "complete" and out["embedded"] == job.embedding_total

    # Redeliver every conversation's chunk event to the stage: the same rows, the same count.
    before = [(r["chunk_id"], r["created_at"]) for r in rows]
    conversations = [r["conversation_id"] for r in await db.pool.fetch(
        "SELECT conversation_id FROM conversations WHERE job_id = $1", job.job_id)]
    await embed.embed_batch(runtime, [ConversationChunked(job_id=job.job_id, user_id=user_id, conversation_id=c)
                                      for c in conversations])
    after = await db.embeddings.rows(job.job_id, space.space_id)
    assert [(r["chunk_id"], r["created_at"]) for r in after] == before
    again = await db.jobs.get(job.job_id)
    assert again.embedding_status == EmbeddingStatus.COMPLETE
    assert again.embedded == again.embedding_total == job.embedding_total


async def test_a_refusing_provider_fails_only_the_embedding(runtime, db, user_id, monkeypatch):
    async def refuse(texts, kind):
        raise EmbeddingError("hash: refused for this test")

    monkeypatch.setattr(runtime.embedder, "_embed", refuse)
    job = await import_and_wait(runtime, user_id, EXPORT)
    assert job.status == "complete" and job.quick_status == "ready"
    assert job.embedding_status == EmbeddingStatus.FAILED
    assert job.embedding_error == "hash: refused for this test"


async def test_the_default_local_model_embeds_an_import(runtime, db, user_id, monkeypatch):
    """The one test with the real default model (wordllama) behind the stage."""
    config = EmbeddingConfig()
    assert (config.provider, config.model) == ("local", DEFAULT_LOCAL_MODEL)
    local = build_configured_embedder(config)
    monkeypatch.setattr(runtime, "embedder", local)
    # The session worker's space is local for this test: no re-embedding of everyone else's imports.
    monkeypatch.setattr(reconciler, "REEMBED_CONCURRENCY", 0)
    job = await import_and_wait(runtime, user_id, EXPORT)
    assert job.embedding_status == EmbeddingStatus.COMPLETE, job.embedding_error
    assert job.embedding_model == "local/wordllama-l2-supercat-256/256"
    rows = await db.embeddings.rows(job.job_id, local.space.space_id)
    assert sorted(r["chunk_id"] for r in rows) == sorted(await micro_ids(db, job.job_id))
    assert {r["dims"] for r in rows} == {256}
    vectors = await local.embed(["Pack an umbrella for Oslo.", "Rain gear for a trip to Norway.",
                                 "Eu gosto de pão."], "query")
    assert sum(a * b for a, b in zip(vectors[0], vectors[1])) > sum(a * b for a, b in zip(vectors[0], vectors[2]))


def test_settings_default_to_micro_with_wordllama():
    config = EmbeddingConfig()
    assert config.tiers == ("micro",) and dataclasses.asdict(config)["model"] == DEFAULT_LOCAL_MODEL


async def test_the_reconciler_redrives_chunks_left_without_vectors(runtime, db, user_id, monkeypatch):
    real = embed.embed_job

    async def lost(*args):  # the embed lane's events went missing (a worker died mid-batch)
        return None

    monkeypatch.setattr(embed, "embed_job", lost)
    job_id = await publish_import(runtime.settings, user_id, EXPORT)
    # Everything else about the job has ended, so the embedding is all the reconciler finds.
    job = await wait_until(lambda: db.jobs.get(job_id),
                           lambda j: (j is not None and j.status == "complete" and j.embedding_total is not None
                                      and j.quick_status in ("ready", "failed")
                                      and j.full_pass_status in ("complete", "failed", "skipped")),
                           what="chunking, the quick pass and the full pass to end")
    assert job.embedding_status == EmbeddingStatus.PENDING and job.embedded == 0
    monkeypatch.setattr(embed, "embed_job", real)

    acted, events = await reconciler.reconcile_job(runtime, job, None)
    assert acted == 1 and {e.conversation_id for e in events} == {
        r["conversation_id"] for r in await db.pool.fetch("SELECT conversation_id FROM conversations"
                                                          " WHERE job_id = $1", job_id)}
    await emit(runtime, events)
    done = await wait_until(lambda: db.jobs.get(job_id), lambda j: j.embedding_status != "pending",
                            what="the re-driven embedding")
    assert done.embedding_status == EmbeddingStatus.COMPLETE and done.embedded == done.embedding_total
    # Re-drives are bounded in a row without progress: the vectors it brought reset the count.
    assert done.embedding_redrives == 0


def test_embedding_settings_refuse_what_cannot_work_in_one_line():
    from soulprint.settings import SettingsError, load_settings

    ok = load_settings({"SOULPRINT_EMBEDDING_PROVIDER": "bedrock-titan", "SOULPRINT_EMBEDDING_DIMENSIONS": "512",
                        "SOULPRINT_EMBEDDING_TIERS": "micro,medium"}).embedding
    assert (ok.dimensions, ok.tiers, ok.bedrock_model) == (512, ("micro", "medium"), "amazon.titan-embed-text-v2:0")
    assert load_settings({"SOULPRINT_EMBEDDING_TIERS": "none"}).embedding.tiers == ()
    for env, named in ((({"SOULPRINT_EMBEDDING_TIERS": "micro,tiny"}), "SOULPRINT_EMBEDDING_TIERS"),
                       ({"SOULPRINT_EMBEDDING_MODEL": "minilm"}, "SOULPRINT_EMBEDDING_MODEL"),
                       ({"SOULPRINT_EMBEDDING_PROVIDER": "bedrock-titan", "SOULPRINT_EMBEDDING_DIMENSIONS": "300"},
                        "SOULPRINT_EMBEDDING_DIMENSIONS"),
                       ({"SOULPRINT_EMBEDDING_PROVIDER": "openai"}, "SOULPRINT_EMBEDDING_PROVIDER")):
        with pytest.raises(SettingsError, match=named):
            load_settings(env)
