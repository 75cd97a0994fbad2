"""Incremental re-import: a newer export of the same person pays only for what changed.

Conversations whose fingerprint is unchanged from the person's current import
are copied (chunks, vectors, facts), not chunked, embedded or extracted again;
new and changed ones are processed; conversations gone from the newer export
are gone from the new soulprint. LLM calls go through the fake Anthropic
server with the Postgres response cache and usage rows, so "paid" is what a
real provider would bill (llm_usage.requests).
"""

from __future__ import annotations

import json
import uuid
import zipfile
from pathlib import Path

import pytest

from soulprint.domain.facts import build_fact_requests, by_conversation, is_small, pack_small_conversations
from soulprint.services.db import PostgresUsageSink
from soulprint.services.llm.anthropic_provider import AnthropicClient
from soulprint.services.llm.cache import MemoryCache
from support.fake_anthropic import FakeAnthropicServer
from support.fixtures_llm import fast_config, fresh_limiter
from support.llm_wrappers import llm_swapped
from support.pipeline import import_and_wait

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-export.zip"


@pytest.fixture(scope="module")
def conversations() -> list[dict]:
    with zipfile.ZipFile(SAMPLE) as zf:
        return json.loads(zf.read("conversations.json"))


def write_export(path: Path, conversations: list[dict]) -> Path:
    path.write_text(json.dumps(conversations))
    return path


def changed(conversation: dict) -> dict:
    """The conversation with one more word in its first user message (so every chunk differs)."""
    out = json.loads(json.dumps(conversation))
    for node in out["mapping"].values():
        message = node.get("message") or {}
        if (message.get("author") or {}).get("role") == "user":
            parts = message["content"].get("parts") or []
            if parts and isinstance(parts[0], str) and parts[0].strip():
                parts[0] += " Also, I moved to Reykjavik last spring."
                return out
    raise AssertionError("no user message to change")


@pytest.fixture
async def fake_llm(runtime, db):
    """The worker's LLM calls through the fake Messages API, accounted in Postgres, with a
    response cache of the test's own (the session's would answer what other tests asked)."""
    async with FakeAnthropicServer(seed=5) as server:
        client = AnthropicClient(fast_config(server.url), sink=PostgresUsageSink(db.pool),
                                 cache=MemoryCache(), limiter=fresh_limiter())
        try:
            with llm_swapped(runtime, client):
                yield server
        finally:
            await client.aclose()


async def paid(db, job_id: str, stage: str | None = None) -> int:
    """Requests billed for the job (cache hits are not): llm_usage.requests."""
    return await db.pool.fetchval(
        "SELECT coalesce(sum(requests), 0)::int FROM llm_usage WHERE job_id = $1 AND ($2::text IS NULL OR stage = $2)",
        job_id, stage)


async def carried(db, job_id: str) -> tuple[int, int]:
    row = await db.pool.fetchrow(
        "SELECT conversations_carried, extraction_carried FROM import_jobs WHERE job_id = $1", job_id)
    return row["conversations_carried"], row["extraction_carried"]


async def facts_by_content(db, job_id: str) -> list[tuple]:
    rows = await db.pool.fetch(
        "SELECT f.conversation_id, k.chunk_index, f.category, f.text FROM facts f"
        " JOIN conversation_chunks k ON k.job_id = f.job_id AND k.chunk_id = f.chunk_id"
        " WHERE f.job_id = $1 ORDER BY 1, 2, 3, 4", job_id)
    return [tuple(r) for r in rows]


async def extraction_requests(runtime, db, job_id: str, conversation_ids: list[str]) -> int:
    """How many extraction requests these conversations of the job take: each larger one its own,
    the small ones packed together (agents/facts.py)."""
    job = await db.jobs.get(job_id)
    budget = runtime.settings.facts_request_tokens
    chunks, _ = await db.chunks.to_extract(job_id, job.user_id, conversation_ids)
    groups = list(by_conversation(chunks).values())
    small = [g for g in groups if is_small(g, token_budget=budget)]
    alone = [c for g in groups if g not in small for c in g]
    return (len(pack_small_conversations(job.user_id, job_id, small, token_budget=budget))
            + len(build_fact_requests(job.user_id, job_id, alone, token_budget=budget)))


async def test_the_first_import_packs_its_small_conversations_together(runtime, db, user_id, fake_llm,
                                                                      conversations, tmp_path):
    """Each larger conversation is sent on its own; the small ones share requests, packed in
    conversation-id order over the whole job: the requests are a function of the export."""
    short = [c for c in conversations if 0 < sum(len(n.get("message") and json.dumps(n["message"]) or "")
                                                 for n in c["mapping"].values()) < 20_000]
    export = write_export(tmp_path / "short.json", short[:60] + [c for c in conversations if c not in short][:10])
    job = await import_and_wait(runtime, user_id, export)
    assert job.full_pass_status == "complete", job.full_pass_error
    ids = [r["conversation_id"] for r in await db.pool.fetch(
        "SELECT conversation_id FROM conversations WHERE job_id = $1", job.job_id)]
    chunks, _ = await db.chunks.to_extract(job.job_id, user_id, ids)
    groups = by_conversation(chunks).values()
    budget = runtime.settings.facts_request_tokens
    small = [g for g in groups if is_small(g, token_budget=budget)]
    packs = pack_small_conversations(user_id, job.job_id, small, token_budget=budget)
    assert len(small) >= 20 and len(packs) <= len(small) / 3  # three small conversations or more a request
    assert await paid(db, job.job_id, "facts") == await extraction_requests(runtime, db, job.job_id, ids)
    assert job.extraction_done == job.extraction_total == len(chunks)


async def test_an_identical_reimport_pays_nothing_and_chunks_nothing(runtime, db, user_id, fake_llm):
    first = await import_and_wait(runtime, user_id, SAMPLE)
    assert first.full_pass_status == "complete", first.full_pass_error
    assert await paid(db, first.job_id, "facts") > 0
    assert await carried(db, first.job_id) == (0, 0)
    facts_before = await facts_by_content(db, first.job_id)

    second = await import_and_wait(runtime, user_id, SAMPLE)

    assert second.status == "complete" and second.full_pass_status == "complete", second.full_pass_error
    assert second.quick_status == "ready"
    assert await paid(db, second.job_id) == 0  # quick pass, facts, consolidation, memory, sections
    # Every conversation carried, none chunked; every extraction chunk came with its facts.
    assert await carried(db, second.job_id) == (second.conversations, second.extraction_total)
    assert await facts_by_content(db, second.job_id) == facts_before != []
    soulprint = await db.soulprints.get(user_id)
    assert soulprint["job_id"] == second.job_id and soulprint["version"] == 2
    # The chunk rows are copies; the first import's were removed when the second became current.
    jobs = await db.pool.fetch("SELECT DISTINCT job_id FROM conversation_chunks WHERE user_id = $1", user_id)
    assert [r["job_id"] for r in jobs] == [second.job_id]
    assert second.chunks_micro == first.chunks_micro and second.chunks_medium == first.chunks_medium
    embeddings = await db.pool.fetchval("SELECT count(*) FROM chunk_embeddings WHERE job_id = $1", second.job_id)
    assert embeddings > 0 and second.embedding_status in ("complete", "skipped", "pending", "processing")


async def test_a_superset_extracts_only_its_new_and_changed_conversations(runtime, db, user_id, fake_llm,
                                                                         conversations, tmp_path):
    n = len(conversations)
    new = conversations[: n // 11]  # 10% more than the base, newest first as exports are
    kept = conversations[n // 11:]
    removed, edited = kept[0], kept[1]  # gone from the superset; changed in it
    base = write_export(tmp_path / "base.json", kept)
    superset = write_export(tmp_path / "superset.json", new + [changed(edited)] + kept[2:])

    first = await import_and_wait(runtime, user_id, base)
    assert first.full_pass_status == "complete", first.full_pass_error
    first_requests = await paid(db, first.job_id, "facts")
    facts_before = await db.pool.fetch("SELECT fact_id, text FROM facts WHERE job_id = $1", first.job_id)

    second = await import_and_wait(runtime, user_id, superset)

    assert second.status == "complete" and second.full_pass_status == "complete", second.full_pass_error
    assert await carried(db, second.job_id) == (len(kept) - 2, await db.pool.fetchval(
        "SELECT count(*) FROM conversation_chunks k JOIN conversations c USING (job_id, conversation_id)"
        " WHERE k.job_id = $1 AND k.tier = 'medium' AND c.conversation_id <> ALL($2::text[])",
        second.job_id, [c["id"] for c in new] + [edited["id"]]))
    # Only the new and the changed conversations were sent for extraction.
    fresh = [c["id"] for c in new] + [edited["id"]]
    paid_facts = await paid(db, second.job_id, "facts")
    # Exactly what the new and changed conversations take on their own (their small ones packed
    # together), a small part of the first import's.
    assert paid_facts == await extraction_requests(runtime, db, second.job_id, fresh)
    assert paid_facts <= 0.2 * first_requests, (paid_facts, first_requests)
    before = {(r["fact_id"], r["text"]) for r in facts_before}
    after = await db.pool.fetch("SELECT fact_id, conversation_id, text FROM facts WHERE job_id = $1", second.job_id)
    assert {r["conversation_id"] for r in after if (r["fact_id"], r["text"]) not in before} <= set(fresh)
    # The changed conversation was processed again: its chunks are new, its facts its own.
    changed_row = await db.pool.fetchrow(
        "SELECT fingerprint FROM conversations WHERE job_id = $1 AND conversation_id = $2",
        second.job_id, edited["id"])
    assert changed_row["fingerprint"] is not None
    assert await db.pool.fetchval("SELECT count(*) FROM conversations WHERE user_id = $1 AND conversation_id = $2",
                                  user_id, removed["id"]) == 0
    assert "Reykjavik" in await db.pool.fetchval(
        "SELECT string_agg(content, ' ') FROM conversation_chunks WHERE job_id = $1 AND conversation_id = $2",
        second.job_id, edited["id"])


async def test_a_conversation_gone_from_the_newer_export_is_gone_from_memory(runtime, db, user_id, tmp_path,
                                                                             conversations):
    """Offline provider (its facts quote the person's own words): the dropped conversation's
    facts leave the facts, the consolidated facts and MEMORY of the new version."""
    first = await import_and_wait(runtime, user_id, SAMPLE)
    assert first.full_pass_status == "complete", first.full_pass_error
    by_conversation = await db.pool.fetch(
        "SELECT conversation_id, array_agg(text) AS texts FROM facts WHERE job_id = $1 GROUP BY 1"
        " ORDER BY count(*) DESC", first.job_id)
    memory_before = (await db.soulprints.get(user_id))["memory_md"]
    texts = {r["conversation_id"]: set(r["texts"]) for r in by_conversation}

    def only_in(conversation_id: str) -> set[str]:
        return texts[conversation_id].difference(*(t for c, t in texts.items() if c != conversation_id))

    # A conversation some of whose facts, said nowhere else, reach MEMORY.
    gone_id = next(c for c in texts if any(t in memory_before for t in only_in(c)))
    only_there = only_in(gone_id)

    second = await import_and_wait(runtime, user_id, write_export(
        tmp_path / "without.json", [c for c in conversations if c["id"] != gone_id]))

    assert second.full_pass_status == "complete", second.full_pass_error
    assert await carried(db, second.job_id) == (len(conversations) - 1, second.extraction_total)
    assert await db.pool.fetchval("SELECT count(*) FROM facts WHERE user_id = $1 AND conversation_id = $2",
                                  user_id, gone_id) == 0
    memory = (await db.soulprints.get(user_id))["memory_md"]
    assert not any(t in memory for t in only_there)


async def test_the_previous_version_stays_readable_until_the_new_import_completes(runtime, db, user_id):
    """Driven through the state machine: the newer job carries every conversation over; until its
    chunking completes, the person's current import, rows and soulprint are the first's."""
    from soulprint.agents.chunker import write_batch
    from soulprint.domain.parsing import ExportReader
    from soulprint.models.events import ConversationImported

    s = runtime.settings
    first = await import_and_wait(runtime, user_id, SAMPLE)
    soulprint = await db.soulprints.get(user_id)
    rows = await db.pool.fetchval("SELECT count(*) FROM conversation_chunks WHERE job_id = $1", first.job_id)

    job_id = str(uuid.uuid4())
    await db.jobs.create(job_id, user_id, SAMPLE.as_uri())
    assert await db.jobs.claim_ingest(job_id, "test", s.stale_claim_s)
    events = [ConversationImported.from_domain(job_id, user_id, seq, conv)
              for seq, conv in enumerate(ExportReader(SAMPLE.as_uri(), limits=s.parse_limits))]
    copied, written = await write_batch(runtime, events)
    assert len(copied) == len(events) and written == []
    assert (await write_batch(runtime, events)) == ([], [])  # a redelivery copies nothing twice

    assert await db.jobs.current_job_id(user_id) == first.job_id
    assert await db.soulprints.get(user_id) == soulprint
    assert await db.pool.fetchval("SELECT count(*) FROM conversation_chunks WHERE job_id = $1",
                                  first.job_id) == rows

    assert await db.jobs.fail(job_id, "test", "abandoned")
    assert await db.jobs.current_job_id(user_id) == first.job_id
    assert await db.pool.fetchval("SELECT count(*) FROM conversation_chunks WHERE job_id = $1",
                                  first.job_id) == rows
    assert await db.pool.fetchval("SELECT count(*) FROM conversation_chunks WHERE job_id = $1", job_id) == 0


async def test_an_unchanged_conversation_sent_by_reference_is_carried_and_its_payload_dropped(runtime, db, user_id):
    from soulprint.agents.chunker import chunk_stored
    from soulprint.domain.parsing import ExportReader
    from soulprint.models.events import ConversationImported, payload

    s = runtime.settings
    first = await import_and_wait(runtime, user_id, SAMPLE)
    conv = max(ExportReader(SAMPLE.as_uri(), limits=s.parse_limits), key=lambda c: len(c.messages))
    job_id = str(uuid.uuid4())
    await db.jobs.create(job_id, user_id, SAMPLE.as_uri())
    assert await db.jobs.claim_ingest(job_id, "test", s.stale_claim_s)
    stored = payload(conv)
    assert await db.chunks.store_payload(job_id, user_id, conv.id, stored)

    await chunk_stored(runtime, ConversationImported.from_domain(job_id, user_id, 0, conv, stored=stored))

    job = await db.jobs.get(job_id)
    assert (job.conversations_chunked, await carried(db, job_id)) == (1, (1, job.chunks_medium))
    assert await db.chunks.payload_count(job_id) == 0
    async def chunks_of(job: str) -> list[tuple]:
        return [tuple(r) for r in await db.pool.fetch(
            "SELECT chunk_id, content FROM conversation_chunks WHERE job_id = $1 AND conversation_id = $2"
            " ORDER BY chunk_id", job, conv.id)]

    assert await chunks_of(job_id) == await chunks_of(first.job_id) != []
    assert await db.jobs.fail(job_id, "test", "done with it")
