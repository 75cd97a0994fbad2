"""The import pipeline end to end over the real embedded broker and Postgres.

An ImportRequested goes on the imports topic; the ingest and chunker agents
of an in-process faust worker carry it to rows in Postgres.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from soulprint.models.events import ImportRequested
from soulprint.services.kafka import ImportPublisher
from support.waiting import wait_for_job

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-export.zip"


async def publish(settings, job_id: str, user_id: str, source: Path) -> None:
    async with ImportPublisher(settings) as publisher:
        await publisher.publish(
            ImportRequested(job_id=job_id, user_id=user_id, source_uri=source.as_uri(), requested_at=time.time())
        )


async def table_snapshot(db, user_id: str) -> dict:
    chunks = await db.pool.fetch(
        "SELECT chunk_id, conversation_id, tier, chunk_index, md5(content) AS h, message_ids, is_recent"
        " FROM conversation_chunks WHERE user_id = $1 ORDER BY chunk_id",
        user_id,
    )
    convs = await db.pool.fetch(
        "SELECT conversation_id, title, message_count FROM conversations WHERE user_id = $1 ORDER BY 1", user_id
    )
    return {"chunks": [tuple(r) for r in chunks], "conversations": [tuple(r) for r in convs]}


async def test_sample_export_lands_in_postgres(runtime, db, user_id):
    job_id = str(uuid.uuid4())
    await publish(runtime.settings, job_id, user_id, SAMPLE)

    job = await wait_for_job(db, job_id)

    assert job.status == "complete", job.error
    assert job.conversations > 0 and job.messages > job.conversations
    assert job.conversations_chunked == job.conversations
    snapshot = await table_snapshot(db, user_id)
    assert len(snapshot["conversations"]) == job.conversations
    tiers = {"micro": 0, "medium": 0, "macro": 0}
    for row in snapshot["chunks"]:
        tiers[row[2]] += 1
    assert tiers == {"micro": job.chunks_micro, "medium": job.chunks_medium, "macro": job.chunks_macro}
    assert all(n > 0 for n in tiers.values())
    # every chunk says which messages it covers, and recency is relative to the export
    assert all(row[5] for row in snapshot["chunks"])
    assert any(row[6] for row in snapshot["chunks"]) and not all(row[6] for row in snapshot["chunks"])
    assert job.progress == 100
    assert set(job.stage_times) >= {"parsing", "chunking"}
    # Keyword search runs on micro chunks, the tier cut for names and exact facts.
    found = await db.pool.fetch(
        "SELECT tier, content FROM conversation_chunks"
        " WHERE user_id = $1 AND content_tsv @@ plainto_tsquery('simple', 'Dagster')", user_id,
    )
    assert found and all(r["tier"] == "micro" and "dagster" in r["content"].lower() for r in found)
    unindexed = await db.pool.fetchval(
        "SELECT count(*) FROM conversation_chunks WHERE user_id = $1 AND tier <> 'micro' AND content_tsv IS NOT NULL",
        user_id,
    )
    assert unindexed == 0


async def test_publishing_the_same_import_twice_leaves_the_same_rows(runtime, db, user_id):
    job_id = str(uuid.uuid4())
    await publish(runtime.settings, job_id, user_id, SAMPLE)
    first = await wait_for_job(db, job_id)
    before = await table_snapshot(db, user_id)

    await publish(runtime.settings, job_id, user_id, SAMPLE)  # a redelivery of the same event
    second_job = str(uuid.uuid4())
    await publish(runtime.settings, second_job, user_id, SAMPLE)  # and a fresh import of the same file
    again = await wait_for_job(db, second_job)
    after = await table_snapshot(db, user_id)

    assert first.status == again.status == "complete"
    assert (await db.jobs.get(job_id)).conversations_chunked == first.conversations_chunked
    assert before == after
    assert again.chunks_medium == first.chunks_medium


def _conversation(mapping: dict, current: str = "b") -> dict:
    return {"id": "c1", "title": "t", "create_time": 1700000000, "current_node": current, "mapping": mapping}


def _node(node_id: str, parent, text: str = "hello") -> dict:
    return {"id": node_id, "parent": parent, "message": {
        "id": node_id, "author": {"role": "user"}, "create_time": 1700000000,
        "content": {"content_type": "text", "parts": [text]}}}


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _bad_inputs(tmp: Path) -> dict[str, Path]:
    """Every kind of bad input the importer must refuse, as files on disk."""
    import json as _json

    def write(name: str, data: bytes) -> Path:
        (tmp / name).write_bytes(data)
        return tmp / name

    good = _json.dumps([_conversation({"a": _node("a", None), "b": _node("b", "a")})]).encode()
    return {
        "not_json": write("notes.txt", b"this is not an export"),
        "truncated": write("cut.json", good[: len(good) // 2]),
        "bad_shape": write("shape.json", b'{"something": 1}'),
        "empty": write("empty.json", b"[]"),
        "zip_bomb": _zip(tmp / "bomb.zip", {"conversations.json": b"[" + b" " * 50_000_000 + b"]"}),
        "unsafe_zip": _zip(tmp / "unsafe.zip", {"../../etc/conversations.json": good}),
        "cyclic_tree": write("cycle.json", _json.dumps([_conversation(
            {"a": _node("a", "b"), "b": _node("b", "a")})]).encode()),
        "dangling_parent": write("dangling.json", _json.dumps([_conversation(
            {"b": _node("b", "gone")})]).encode()),
        "message_too_large": write("huge.json", _json.dumps([_conversation(
            {"a": _node("a", None), "b": _node("b", "a", "x" * 2_100_000)})]).encode()),
        "invalid_utf8": write("latin1.json", good.replace(b"hello", "héllo".encode("latin-1"))),
        "too_deep": write("deep.json", b'[{"mapping": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]"),
    }


BAD_INPUT_CODES = ["not_json", "truncated", "bad_shape", "empty", "zip_bomb", "unsafe_zip", "cyclic_tree",
                   "dangling_parent", "message_too_large", "invalid_utf8", "too_deep"]


@pytest.mark.parametrize("code", BAD_INPUT_CODES)
async def test_bad_input_fails_the_job_with_its_reason(runtime, db, user_id, tmp_path, code):
    source = _bad_inputs(tmp_path)[code]
    job_id = str(uuid.uuid4())
    await publish(runtime.settings, job_id, user_id, source)

    job = await wait_for_job(db, job_id)

    assert job.status == "failed"
    assert job.error_code == code
    assert "\n" not in job.error and job.error
    rows = await db.pool.fetchval("SELECT count(*) FROM conversation_chunks WHERE job_id = $1", job_id)
    assert rows == 0
