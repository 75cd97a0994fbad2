"""The query service's view (query_soulprints): newest job and version win, whatever order events arrive in.

Events are applied directly (at-least-once delivery means any of them may
come twice, late, or before the other topic's); the last test runs a whole
import and reads what the query lane's agent made of it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from soulprint.models.events import MemoryWritten, SectionsPublished
from soulprint.models.sections import FILE_NAMES
from soulprint.services.db.soulprints import store_memory
from support.pipeline import import_and_wait
from support.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-export.zip"
NAMES = tuple(FILE_NAMES.values())


def sections_event(user_id: str, job_id: str, version: int, tag: str) -> SectionsPublished:
    return SectionsPublished(job_id=job_id, user_id=user_id, version=version, offline=True,
                             soulprint_text=tag, sections={n: f"# {n}\n{tag}\n" for n in NAMES})


async def new_jobs(db, user_id: str, n: int) -> list[str]:
    """``n`` jobs of the person, each created after the one before."""
    ids = [str(uuid.uuid4()) for _ in range(n)]
    for job_id in ids:
        await db.jobs.create(job_id, user_id, "file:///x.zip")
        await db.pool.execute(
            "UPDATE import_jobs SET created_at = (SELECT max(created_at) FROM import_jobs WHERE user_id = $2)"
            " + interval '1 second' WHERE job_id = $1", job_id, user_id)
    return ids


async def row(db, user_id: str):
    return await db.pool.fetchrow("SELECT * FROM query_soulprints WHERE user_id = $1", user_id)


async def test_a_newer_version_replaces_and_a_replay_changes_nothing(db, user_id):
    (job,) = await new_jobs(db, user_id, 1)
    v1, v2 = sections_event(user_id, job, 1, "one"), sections_event(user_id, job, 2, "two")
    assert await db.view.apply_sections(v1)
    assert await db.view.apply_sections(v2)
    after = await row(db, user_id)
    for replay in (v1, v2, v1):  # redelivered, and an old version after the new one
        assert not await db.view.apply_sections(replay)
    assert await row(db, user_id) == after  # the same row, to its updated_at
    assert (after["version"], after["sections"]["SOUL"]) == (2, "# SOUL\ntwo\n")


async def test_an_older_job_never_replaces_a_newer_one(db, user_id):
    old, new = await new_jobs(db, user_id, 2)
    assert await db.view.apply_sections(sections_event(user_id, new, 1, "new"))
    assert not await db.view.apply_sections(sections_event(user_id, old, 2, "old v2"))
    assert not await db.view.apply_memory(MemoryWritten(job_id=old, user_id=user_id, memory_md="old memory"))
    current = await row(db, user_id)
    assert (current["job_id"], current["version"], current["memory_md"]) == (new, 1, None)
    # A newer job's v1 replaces an older job's v2, and its MEMORY starts empty.
    newest = (await new_jobs(db, user_id, 1))[0]
    await db.view.apply_memory(MemoryWritten(job_id=new, user_id=user_id, memory_md="new memory"))
    assert await db.view.apply_sections(sections_event(user_id, newest, 1, "newest"))
    current = await row(db, user_id)
    assert (current["job_id"], current["version"], current["memory_md"]) == (newest, 1, None)


async def test_memory_stays_with_its_job_in_either_order(db, user_id):
    first, second = await new_jobs(db, user_id, 2)
    # sections v1, then MEMORY, then v2: v2 keeps the MEMORY.
    await db.view.apply_sections(sections_event(user_id, first, 1, "v1"))
    memory = MemoryWritten(job_id=first, user_id=user_id, memory_md="# MEMORY\n- likes tea\n")
    assert await db.view.apply_memory(memory)
    assert not await db.view.apply_memory(memory)  # redelivered
    await db.view.apply_sections(sections_event(user_id, first, 2, "v2"))
    assert ((await row(db, user_id))["version"], (await row(db, user_id))["memory_md"]) == (2, memory.memory_md)
    # MEMORY of the next job before any of its sections: stored by the pipeline first, taken with its v1.
    async with db.pool.acquire() as conn:
        await store_memory(conn, second, user_id, "# MEMORY\n- moved to Lyon\n", True)
    assert not await db.view.apply_memory(MemoryWritten(job_id=second, user_id=user_id,
                                                        memory_md="# MEMORY\n- moved to Lyon\n"))
    assert (await row(db, user_id))["memory_md"] == memory.memory_md  # the first job's row is untouched
    await db.view.apply_sections(sections_event(user_id, second, 1, "second"))
    current = await row(db, user_id)
    assert (current["job_id"], current["memory_md"]) == (second, "# MEMORY\n- moved to Lyon\n")


async def test_a_failed_or_foreign_job_is_not_taken(db, user_id):
    good, failed = await new_jobs(db, user_id, 2)
    assert await db.view.apply_sections(sections_event(user_id, good, 1, "good"))
    await db.jobs.fail(failed, "internal", "test")
    assert not await db.view.apply_sections(sections_event(user_id, failed, 1, "failed"))
    # An event naming a job of someone else is no version of this person's.
    (foreign,) = await new_jobs(db, f"other-{user_id}", 1)
    assert not await db.view.apply_sections(sections_event(user_id, foreign, 2, "foreign"))
    assert (await row(db, user_id))["job_id"] == good


async def test_the_view_is_read_through_a_reader_session(db, user_id):
    (job,) = await new_jobs(db, user_id, 1)
    await db.view.apply_sections(sections_event(user_id, job, 1, "hello"))
    async with db.reader.session(user_id) as conn:
        view = await db.view.get(conn, user_id)
    body = view.to_json()
    assert set(body) == {"user_id", "job_id", "version", "offline", "made_at", "sections", "memory"}
    assert (body["user_id"], body["job_id"], body["version"], body["offline"], body["memory"]) == (
        user_id, job, 1, True, None)
    assert list(body["sections"]) == list(NAMES) and body["sections"]["USER"] == "# USER\nhello\n"
    async with db.reader.session(f"other-{user_id}") as conn:
        assert await db.view.get(conn, user_id) is None


async def test_the_query_lane_fills_the_view_after_an_import(runtime, db, user_id):
    job = await import_and_wait(runtime, user_id, SAMPLE)
    assert job.full_pass_status == "complete", job.full_pass_error

    async def view():
        async with db.reader.session(user_id) as conn:
            return await db.view.get(conn, user_id)

    seen = await wait_until(view, lambda v: v is not None and v.version == 2, what="the view at v2")
    stored = await db.soulprints.get(user_id)
    assert seen.job_id == job.job_id and seen.offline == stored["offline"]
    assert seen.sections == {n: stored[f"{n.lower()}_md"] for n in NAMES}
    assert seen.memory_md == stored["memory_md"] == (await db.soulprints.get_memory(job.job_id))["memory_md"]
    made = await db.pool.fetchval("SELECT created_at FROM soulprint_versions WHERE job_id = $1 AND version = 2",
                                  job.job_id)
    assert seen.made_at == made


async def test_a_job_that_fails_after_publishing_gives_the_view_back_to_the_current_import(db, user_id):
    good, bad = await new_jobs(db, user_id, 2)
    rendered = {n: f"# {n}\ngood\n" for n in NAMES}
    await db.soulprints.store(user_id=user_id, job_id=good, version=1, sections={}, rendered=rendered,
                              soulprint_text="good", memory_md=None, offline=True)
    await db.pool.execute("INSERT INTO people (user_id, current_job_id) VALUES ($1, $2)", user_id, good)
    await db.view.apply_sections(sections_event(user_id, good, 1, "good"))
    assert await db.view.apply_sections(sections_event(user_id, bad, 1, "bad"))  # the newer import's quick pass
    await db.jobs.fail(bad, "internal", "test")
    current = await row(db, user_id)
    assert (current["job_id"], current["version"], current["sections"]["SOUL"]) == (good, 1, "# SOUL\ngood\n")
    # With no complete import left to show, the view shows nothing rather than a failed job's soulprint.
    (lone,) = await new_jobs(db, f"lone-{user_id}", 1)
    assert await db.view.apply_sections(sections_event(f"lone-{user_id}", lone, 1, "lone"))
    await db.jobs.fail(lone, "internal", "test")
    assert await row(db, f"lone-{user_id}") is None
