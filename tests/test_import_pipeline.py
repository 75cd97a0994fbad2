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
from soulprint.testing.waiting import wait_for_job

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

    assert job["status"] == "complete", job["error"]
    assert job["conversations"] > 0 and job["messages"] > job["conversations"]
    assert job["conversations_chunked"] == job["conversations"]
    snapshot = await table_snapshot(db, user_id)
    assert len(snapshot["conversations"]) == job["conversations"]
    tiers = {"micro": 0, "medium": 0, "macro": 0}
    for row in snapshot["chunks"]:
        tiers[row[2]] += 1
    assert tiers == {"micro": job["chunks_micro"], "medium": job["chunks_medium"], "macro": job["chunks_macro"]}
    assert all(n > 0 for n in tiers.values())
    # every chunk says which messages it covers, and recency is relative to the export
    assert all(row[5] for row in snapshot["chunks"])
    assert any(row[6] for row in snapshot["chunks"]) and not all(row[6] for row in snapshot["chunks"])
    assert job["progress"] == 100
    assert set(job["stage_times"]) >= {"parsing", "chunking"}


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

    assert first["status"] == again["status"] == "complete"
    assert (await db.get_job(job_id))["conversations_chunked"] == first["conversations_chunked"]
    assert before == after
    assert again["chunks_medium"] == first["chunks_medium"]


@pytest.mark.parametrize(
    "content, code",
    [
        (b"this is not an export", "not_json"),
        (b'[{"title": "cut', "truncated"),
        (b"[]", "empty"),
        (b'{"something": 1}', "bad_shape"),
    ],
)
async def test_bad_input_fails_the_job_with_its_reason(runtime, db, user_id, tmp_path, content, code):
    source = tmp_path / "export.json"
    source.write_bytes(content)
    job_id = str(uuid.uuid4())
    await publish(runtime.settings, job_id, user_id, source)

    job = await wait_for_job(db, job_id)

    assert job["status"] == "failed"
    assert job["error_code"] == code
    assert "\n" not in job["error"] and job["error"]
    rows = await db.pool.fetchval("SELECT count(*) FROM conversation_chunks WHERE job_id = $1", job_id)
    assert rows == 0
