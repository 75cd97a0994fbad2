"""Re-imports: a failed or abandoned job never touches the person's last complete import.

A job's conversations and chunks are its own rows; a job that completes
becomes the person's current import and retires the older ones; a newer job
supersedes an older unfinished one; nothing moves data backwards.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
import zipfile
from pathlib import Path

import pytest

from soulprint.agents.reconciler import reconcile_job
from soulprint.domain.chunking import chunk_conversation
from soulprint.domain.parsing import ExportReader
from soulprint.models.domain import ExportSummary, ProfileHints
from soulprint.models.jobs import SUPERSEDED, FullPassStage, JobStatus
from soulprint.services.db import ChunkWrite
from support.pipeline import import_and_wait

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-export.zip"


@pytest.fixture(scope="module")
def newer_export_that_fails(data_root) -> Path:
    """The sample's conversations again, then one the parser rejects (its message tree is a cycle)."""
    out = data_root / "reimport-fails.json"
    with zipfile.ZipFile(SAMPLE) as zf:
        conversations = json.loads(zf.read("conversations.json"))

    def node(node_id, parent):
        return {"id": node_id, "parent": parent, "message": {
            "id": node_id, "author": {"role": "user"}, "create_time": 1700000000,
            "content": {"content_type": "text", "parts": ["hello"]}}}

    conversations.append({"id": "cycle", "title": "t", "create_time": 1700000000, "current_node": "b",
                          "mapping": {"a": node("a", "b"), "b": node("b", "a")}})
    out.write_text(json.dumps(conversations))
    return out


async def person(db, user_id: str) -> dict:
    """Everything of the person's import: rows (with their job), the soulprint, the current job."""
    conversations = await db.pool.fetch(
        "SELECT job_id, conversation_id, title, message_count, chunks_medium FROM conversations"
        " WHERE user_id = $1 ORDER BY conversation_id", user_id)
    chunks = await db.pool.fetch(
        "SELECT job_id, chunk_id, tier, chunk_index, md5(content), is_recent FROM conversation_chunks"
        " WHERE user_id = $1 ORDER BY chunk_id", user_id)
    facts = await db.pool.fetch(
        "SELECT job_id, fact_id, chunk_id, text FROM facts WHERE user_id = $1 ORDER BY fact_id", user_id)
    soulprint = await db.soulprints.get(user_id)
    return {
        "current": await db.jobs.current_job_id(user_id),
        "conversations": [tuple(r) for r in conversations],
        "chunks": [tuple(r) for r in chunks],
        "facts": [tuple(r) for r in facts],
        "soulprint": soulprint and (soulprint["job_id"], soulprint["version"], soulprint["soulprint_text"]),
    }


def content(snapshot: dict) -> dict:
    """The snapshot without job ids: what the person's data says."""
    return {"conversations": [r[1:] for r in snapshot["conversations"]], "chunks": [r[1:] for r in snapshot["chunks"]]}


def sample_writes(settings, job_id: str, user_id: str, n: int) -> list[ChunkWrite]:
    reader = ExportReader(SAMPLE.as_uri(), limits=settings.parse_limits)
    writes = []
    for conv in reader:
        writes.append(ChunkWrite(job_id=job_id, user_id=user_id, conversation=conv,
                                 chunks=chunk_conversation(user_id, conv, settings.chunking)))
        if len(writes) == n:
            break
    return writes


async def test_a_failed_reimport_leaves_the_complete_import_exactly_as_it_was(runtime, db, user_id,
                                                                                newer_export_that_fails):
    first = await import_and_wait(runtime, user_id, SAMPLE)
    assert first.full_pass_status == "complete", first.full_pass_error
    before = await person(db, user_id)
    assert before["current"] == first.job_id and before["soulprint"][:2] == (first.job_id, 2)
    assert before["chunks"] and before["facts"]

    failed = await import_and_wait(runtime, user_id, newer_export_that_fails)

    assert failed.status == "failed" and failed.error_code == "cyclic_tree"
    assert await person(db, user_id) == before


async def test_a_reimport_failing_mid_chunking_after_its_quick_pass_restores_the_soulprint(runtime, db, user_id):
    """Driven through the state machine: the newer job chunks some of the same conversations and
    stores its quick soulprint, then fails. Everything is back as the complete import left it."""
    s = runtime.settings
    first = await import_and_wait(runtime, user_id, SAMPLE)
    before = await person(db, user_id)

    jobs, job_id = db.jobs, str(uuid.uuid4())
    await jobs.create(job_id, user_id, SAMPLE.as_uri())
    assert await jobs.claim_ingest(job_id, "test", s.stale_claim_s)
    written = await jobs.write_chunks(sample_writes(s, job_id, user_id, 5))
    assert len(written) == 5
    summary = ExportSummary(format="chatgpt", conversations=first.conversations, messages=first.messages)
    assert (await jobs.finish_ingest(job_id, summary, ProfileHints(), [])).job is not None
    quick = await db.soulprints.get(user_id)
    assert await db.soulprints.store(user_id=user_id, job_id=job_id, version=1, sections=quick["sections"],
                                     rendered={k: quick[f"{k.lower()}_md"] for k in
                                               ("SOUL", "IDENTITY", "USER", "AGENTS", "TOOLS")},
                                     soulprint_text="the newer job's quick version", memory_md=None, offline=True)
    assert (await db.soulprints.get(user_id))["job_id"] == job_id

    assert await jobs.fail(job_id, "bad_input", "one bad conversation")

    assert await person(db, user_id) == before
    assert await db.pool.fetchval("SELECT count(*) FROM conversation_chunks WHERE job_id = $1", job_id) == 0


async def test_a_successful_reimport_holds_exactly_the_new_rows_with_the_same_ids(runtime, db, user_id):
    first = await import_and_wait(runtime, user_id, SAMPLE)
    before = await person(db, user_id)
    # An embedding of the first import (marked, so a copy is told from a new one): unchanged
    # content keeps it in the new import. (Vectors of another space than the configured one
    # are dropped once the new import's embedding completes: tests/test_reembed.py.)
    space = runtime.embedder.space
    marker = "[" + ",".join(["1"] + ["0"] * (space.dimensions - 1)) + "]"
    chunk_id = await db.pool.fetchval(
        "UPDATE chunk_embeddings SET embedding = $3::vector WHERE (job_id, chunk_id, model) IN"
        " (SELECT job_id, chunk_id, model FROM chunk_embeddings WHERE job_id = $1 AND model = $2 LIMIT 1)"
        " RETURNING chunk_id", first.job_id, space.space_id, marker)

    second = await import_and_wait(runtime, user_id, SAMPLE)

    after = await person(db, user_id)
    assert second.status == "complete" and after["current"] == second.job_id
    assert {r[0] for r in after["conversations"]} == {r[0] for r in after["chunks"]} == {second.job_id}
    assert {r[0] for r in after["facts"]} == {second.job_id}
    assert content(after) == content(before)  # same conversations, same chunk ids and contents
    assert after["soulprint"][:2] == (second.job_id, 2)
    carried = await db.pool.fetch("SELECT job_id, embedding::text FROM chunk_embeddings"
                                  " WHERE chunk_id = $1 AND model = $2", chunk_id, space.space_id)
    assert [tuple(r) for r in carried] == [(second.job_id, marker)]


async def test_an_abandoned_job_is_superseded_by_the_newer_import_and_never_comes_back(runtime, db, user_id):
    """Ctrl-C mid-chunking, then the import is run again: the first job must not take anything back."""
    s = runtime.settings
    abandoned = str(uuid.uuid4())
    await db.jobs.create(abandoned, user_id, SAMPLE.as_uri())
    assert await db.jobs.claim_ingest(abandoned, "killed-cli", s.stale_claim_s)
    assert len(await db.jobs.write_chunks(sample_writes(s, abandoned, user_id, 3))) == 3

    newer = await import_and_wait(runtime, user_id, SAMPLE)

    old = await db.jobs.get(abandoned)
    assert newer.status == "complete"
    assert old.status == JobStatus.FAILED and old.error_code == SUPERSEDED and newer.job_id in old.error
    assert await db.pool.fetchval("SELECT count(*) FROM conversations WHERE job_id = $1", abandoned) == 0
    before = await person(db, user_id)

    # Whatever comes for the old job now, nothing moves: no claim, no re-drive, no chunks, no soulprint.
    assert not await db.jobs.claim_ingest(abandoned, "late", 0.0)
    assert (await db.jobs.write_chunks(sample_writes(s, abandoned, user_id, 3))) == []
    assert all(job.job_id != abandoned for job, _ in await db.jobs.stalled(0.0))
    assert (await db.jobs.complete_chunking(abandoned, recent_days=s.recent_days,
                                            min_full_pass_conversations=s.min_full_pass_conversations,
                                            extraction_max_attempts=s.extraction_max_attempts)).job is None
    assert await person(db, user_id) == before


async def test_an_older_job_is_never_claimed_over_a_newer_one(runtime, db, user_id):
    older, newer = str(uuid.uuid4()), str(uuid.uuid4())
    await db.jobs.create(older, user_id, SAMPLE.as_uri())
    await db.jobs.create(newer, user_id, SAMPLE.as_uri())
    assert await db.jobs.claim_ingest(newer, "w", 60)

    assert not await db.jobs.claim_ingest(older, "w", 60)

    job = await db.jobs.get(older)
    assert job.status == JobStatus.FAILED and job.error_code == SUPERSEDED
    await db.jobs.fail(newer, "test", "cleanup")


async def test_an_older_jobs_soulprint_never_replaces_a_newer_ones(db, user_id):
    older, newer = str(uuid.uuid4()), str(uuid.uuid4())
    await db.jobs.create(older, user_id, "file:///old.zip")
    await db.jobs.create(newer, user_id, "file:///new.zip")
    rendered = {k: f"# {k}" for k in ("SOUL", "IDENTITY", "USER", "AGENTS", "TOOLS")}

    def version(job_id, n):
        return dict(user_id=user_id, job_id=job_id, version=n, sections={}, rendered=rendered,
                    soulprint_text=f"{job_id} v{n}", memory_md=None, offline=True)

    assert await db.soulprints.store(**version(newer, 1))
    assert not await db.soulprints.store(**version(older, 2))  # the older import's full pass ends last
    assert (await db.soulprints.get(user_id))["soulprint_text"] == f"{newer} v1"
    assert await db.soulprints.store(**version(newer, 2))


async def test_each_ingest_redrive_counts_once(runtime, db, user_id):
    """max_redrives=5 allows five re-drives of a stalled import, each followed by its claim."""
    rt = dataclasses.replace(runtime, settings=dataclasses.replace(runtime.settings, max_redrives=5))
    job_id = str(uuid.uuid4())
    await db.jobs.create(job_id, user_id, "file:///stalled.zip")
    assert await db.jobs.claim_ingest(job_id, "w", 60)
    redrives = 0
    while (job := await db.jobs.get(job_id)).is_open:
        handled, events = await reconcile_job(rt, job, None)
        assert handled == 1
        if events:
            redrives += 1
            assert [type(e).__name__ for e in events] == ["ImportRequested"]
            assert await db.jobs.claim_ingest(job_id, "w", 60)  # as the ingest agent does on the event
        assert redrives <= 5
    assert redrives == 5
    assert job.error_code == "stalled"


async def test_a_full_pass_whose_every_fact_was_dropped_fails_with_that_reason(runtime, db, user_id):
    s = runtime.settings
    job_id = str(uuid.uuid4())
    await db.jobs.create(job_id, user_id, SAMPLE.as_uri())
    assert await db.jobs.claim_ingest(job_id, "w", 60)
    n = s.min_full_pass_conversations
    writes = await db.jobs.write_chunks(sample_writes(s, job_id, user_id, n))
    summary = ExportSummary(format="chatgpt", conversations=len(writes), messages=1)
    await db.jobs.finish_ingest(job_id, summary, ProfileHints(), [])
    await db.jobs.complete_chunking(job_id, recent_days=s.recent_days, min_full_pass_conversations=n,
                                    extraction_max_attempts=s.extraction_max_attempts)
    medium = [k.id for w in writes for k in w.chunks if k.tier == "medium"]
    moved = await db.jobs.record_facts(job_id, medium, [], {medium[0]: 7})  # answers naming no chunk they were sent

    assert moved.job.facts_total == 0 and moved.job.facts_dropped == 7
    assert [type(e).__name__ for e in moved.emit] == ["FactsExtracted"]
    assert not await db.jobs.advance_full_pass(job_id, FullPassStage.FACTS, FullPassStage.CONSOLIDATING)
    job = await db.jobs.get(job_id)
    assert job.full_pass_status == "failed" and "dropped" in job.full_pass_error and "7" in job.full_pass_error

