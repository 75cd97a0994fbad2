"""Conversations too large for an event travel by reference, and lone surrogates import.

The inline threshold is set low here (64 KiB) instead of generating tens of
MB: a conversation of ~300 KB then goes through conversation_payloads exactly
as a 40 MB one does (bench/large_conversation_bench.py measures those).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import time
import uuid
from pathlib import Path

import pytest

from soulprint.agents.chunker import chunk_stored
from soulprint.agents.ingest import ingest_export
from soulprint.domain.parsing import ExportReader
from soulprint.models.events import ConversationImported, ImportRequested, payload
from soulprint.reporting import job_finished, job_json
from support.pipeline import import_and_wait
from support.waiting import wait_until

LOW = 64 << 10
_WORDS = "the of and to in is you that it was for on are as with café naïve Zürich 日本語 🙂 .".split()


def chatgpt(cid: str, texts: list[str]) -> dict:
    mapping, parent = {"root": {"id": "root", "message": None, "parent": None}}, "root"
    for i, text in enumerate(texts):
        nid = f"{cid}-{i}"
        mapping[nid] = {"id": nid, "parent": parent, "message": {
            "id": nid, "author": {"role": "user" if i % 2 == 0 else "assistant"}, "create_time": 1.7e9 + i,
            "content": {"content_type": "text", "parts": [text]}}}
        parent = nid
    return {"id": cid, "conversation_id": cid, "title": cid, "create_time": 1.7e9, "update_time": 1.7e9 + len(texts),
            "mapping": mapping, "current_node": parent}


@pytest.fixture(scope="module")
def export(data_root) -> Path:
    """Three small conversations around one of ~300 KB of text."""
    rng = random.Random(3)
    big = [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(300, 1500))) for _ in range(60)]
    convs = [chatgpt("small-1", ["hello", "hi there"]), chatgpt("big", big),
             chatgpt("small-2", ["what is up", "not much"]), chatgpt("small-3", ["bye", "see you"])]
    path = data_root / "large-conversation.json"
    path.write_text(json.dumps(convs))
    return path


def low_threshold(runtime):
    """The session's worker with a 64 KiB inline threshold, its payload writes recorded."""
    db = copy.copy(runtime.db)
    db.chunks = StoreSpy(runtime.db.chunks)
    return dataclasses.replace(runtime, db=db, settings=dataclasses.replace(runtime.settings,
                                                                             inline_conversation_bytes=LOW))


class StoreSpy:
    """The real conversations aggregate; remembers which conversations were stored by reference."""

    def __init__(self, chunks) -> None:
        self._chunks = chunks
        self.stored: list[str] = []

    def __getattr__(self, name):
        return getattr(self._chunks, name)

    async def store_payload(self, job_id, user_id, conversation_id, data):
        self.stored.append(conversation_id)
        return await self._chunks.store_payload(job_id, user_id, conversation_id, data)


async def job_chunks(db, job_id: str) -> list[tuple]:
    rows = await db.pool.fetch(
        "SELECT conversation_id, chunk_id, tier, chunk_index, content, token_count, message_ids, message_at"
        " FROM conversation_chunks WHERE job_id = $1 ORDER BY chunk_id", job_id)
    return [tuple(r) for r in rows]


async def big_conversation(export: Path):
    return next(c for c in ExportReader(export) if c.id == "big")


async def test_a_large_conversation_goes_by_reference_and_is_chunked_as_inline(runtime, db, user_id, export):
    inline = await import_and_wait(runtime, user_id, export)  # 1 MiB threshold: everything inline
    assert inline.status == "complete"
    inline_chunks = await job_chunks(db, inline.job_id)  # retired once the next import completes

    rt = low_threshold(runtime)
    job_id = str(uuid.uuid4())
    await ingest_export(rt, ImportRequested(job_id=job_id, user_id=user_id, source_uri=export.as_uri(),
                                            requested_at=time.time()))
    by_ref = await wait_until(lambda: db.jobs.get(job_id), job_finished, what="the by-reference import")

    assert rt.db.chunks.stored == ["big"]  # only the conversation above the threshold
    assert by_ref.status == "complete"
    assert await db.chunks.payload_count(job_id) == 0  # nothing left behind
    assert await job_chunks(db, job_id) == inline_chunks  # same ids, same contents
    counts = job_json(by_ref)["counts"]
    assert counts == job_json(inline)["counts"] and counts["conversations_chunked"] == 4


async def test_a_redelivered_by_reference_event_is_idempotent(runtime, db, user_id, export):
    jobs, s = db.jobs, runtime.settings
    job_id = str(uuid.uuid4())
    await jobs.create(job_id, user_id, export.as_uri())
    assert await jobs.claim_ingest(job_id, "test", s.stale_claim_s)
    conv = await big_conversation(export)
    stored = payload(conv)
    assert await db.chunks.store_payload(job_id, user_id, conv.id, stored)
    assert not await db.chunks.store_payload(job_id, user_id, conv.id, stored)  # a re-driven parse
    event = ConversationImported.from_domain(job_id, user_id, 1, conv, stored=stored)
    assert event.by_reference and event.messages == [] and event.schema_version == 2

    await chunk_stored(runtime, event)
    first = (await jobs.get(job_id), await job_chunks(db, job_id))
    assert first[0].conversations_chunked == 1 and first[1]
    assert await db.chunks.payload_count(job_id) == 0

    # Redelivered, and again after a re-driven parse tried to store it again.
    await chunk_stored(runtime, event)
    assert not await db.chunks.store_payload(job_id, user_id, conv.id, stored)  # chunked: not kept again
    await chunk_stored(runtime, event)
    job = await jobs.get(job_id)
    assert (job.conversations_chunked, job.chunks_micro, job.chunks_medium, job.chunks_macro) == (
        1, first[0].chunks_micro, first[0].chunks_medium, first[0].chunks_macro)
    assert await job_chunks(db, job_id) == first[1]
    assert await jobs.fail(job_id, "test", "done with it")


async def test_a_failed_job_leaves_no_payload_behind(runtime, db, user_id, export):
    jobs, s = db.jobs, runtime.settings
    job_id = str(uuid.uuid4())
    await jobs.create(job_id, user_id, export.as_uri())
    assert await jobs.claim_ingest(job_id, "test", s.stale_claim_s)
    conv = await big_conversation(export)
    assert await db.chunks.store_payload(job_id, user_id, conv.id, payload(conv))
    assert await db.chunks.payload_count(job_id) == 1

    assert await jobs.fail(job_id, "bad_input", "one bad conversation")
    assert await db.chunks.payload_count(job_id) == 0
    assert not await db.chunks.store_payload(job_id, user_id, conv.id, payload(conv))  # too late: never kept
    assert await db.chunks.payload_count(job_id) == 0
    # The chunker, handed the event anyway, has nothing to do.
    await chunk_stored(runtime, ConversationImported.from_domain(job_id, user_id, 1, conv, stored=b"[]"))
    assert await job_chunks(db, job_id) == []


async def test_a_lone_surrogate_and_a_nul_import_and_are_counted(runtime, db, user_id, data_root):
    path = data_root / "surrogate.json"
    data = json.dumps([chatgpt("odd", ["a QQQ b", "c\x00d"]), chatgpt("plain", ["hello", "hi"])])
    path.write_text(data.replace("QQQ", "\\udc00"))  # a lone low surrogate: once "invalid UTF-8"
    job = await import_and_wait(runtime, user_id, path)
    assert job.status == "complete", job.error
    counts = job_json(job)["counts"]
    assert (counts["surrogates_replaced"], counts["nul_stripped"]) == (1, 1)
    texts = [r["content"] for r in await db.pool.fetch(
        "SELECT content FROM conversation_chunks WHERE job_id = $1 AND conversation_id = 'odd' AND tier = 'micro'"
        " ORDER BY chunk_index", job.job_id)]
    assert texts == ["User: a \ufffd b", "Assistant: cd"]
