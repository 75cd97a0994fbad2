"""Dead letters: a message a retry cannot fix is set aside with its headers, its job keeps the rest
of its work and waits, visibly; `soulprint dlq replay` after the fix completes the job."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from soulprint.agents import chunker as chunker_agent
from soulprint.agents.containment import transient
from soulprint.domain.parsing import ExportReader
from soulprint.reporting import job_finished, job_json
from soulprint.services import deadletters as dl
from soulprint.services.deadletters import Letter
from support.pipeline import publish_import
from support.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-export.zip"


def test_a_letter_keeps_the_original_record_and_names_its_source_in_connect_headers():
    letter = Letter.of(stage="chunker", topic="p.conversations", partition=3, offset=41, key=b"u:c1",
                       value=b'{"a": 1}', headers=[("trace", b"x")], error=ValueError("bad\nthing"), attempts=2,
                       job_id="j", user_id="u")
    headers = dict(letter.record_headers())
    assert headers["trace"] == b"x"
    assert headers[dl.TOPIC] == b"p.conversations" and headers[dl.PARTITION] == b"3" and headers[dl.OFFSET] == b"41"
    assert headers[dl.CLASS] == b"builtins.ValueError" and headers[dl.MESSAGE] == b"bad thing"
    assert headers[dl.STAGE] == b"chunker" and headers[dl.ATTEMPTS] == b"2"
    back = Letter.from_record(b"u:c1", b'{"a": 1}', letter.record_headers())
    # Read back, it is the same letter, and a replay sends the original headers only.
    assert back.id == letter.id and back.headers == [("trace", b"x")] and back.attempts == 2
    again = Letter.of(stage="chunker", topic="p.conversations", partition=3, offset=41, key=b"u:c1",
                      value=b'{"a": 1}', headers=back.record_headers(), error=KeyError("x"), attempts=1)
    assert again.id == letter.id and again.headers == [("trace", b"x")]  # a redelivery is the same letter


def test_lost_connections_and_timeouts_are_retried_and_bugs_are_not():
    assert transient(asyncpg.ConnectionDoesNotExistError("gone")) and transient(TimeoutError())
    assert transient(ConnectionResetError()) and not transient(ValueError("bug")) and not transient(KeyError("k"))


async def cli(settings, *args: str) -> subprocess.CompletedProcess:
    """`soulprint` in a child process attached to the session's embedded stack (share=True); awaited,
    so this process's worker goes on meanwhile."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOULPRINT_")}
    env |= {"SOULPRINT_DATA_DIR": str(settings.data_dir), "SOULPRINT_TOPIC_PREFIX": settings.topic_prefix,
            "SOULPRINT_APP_ID": settings.app_id}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "soulprint.cli", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)  # a guard against a hang, not a timing
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


async def test_a_poisoned_conversation_waits_in_the_dead_letters_and_its_replay_completes_the_job(
        runtime, db, user_id, monkeypatch):
    settings = runtime.settings
    poison = [conv.id for conv in ExportReader(SAMPLE.as_uri(), limits=settings.parse_limits)][3]
    real = chunker_agent.chunk_conversation

    def chunk_or_fail(user, conv, config):  # the bug: one conversation of this person cannot be chunked
        if user == user_id and conv.id == poison:
            raise ValueError(f"cannot chunk {conv.id}")
        return real(user, conv, config)

    monkeypatch.setattr(chunker_agent, "chunk_conversation", chunk_or_fail)
    job_id = await publish_import(settings, user_id, SAMPLE)
    job = await wait_until(lambda: db.jobs.get(job_id),
                           lambda j: j is not None and j.dead_letters == 1 and j.ingest_done
                           and j.conversations_chunked == j.conversations - 1 and j.quick_status == "ready",
                           what="everything but the poisoned conversation")
    # The rest of the work is done and kept; the job is blocked, visibly, and not re-driven.
    assert job.status == "chunking" and "cannot chunk" in job.dead_letter_error
    assert job_json(job)["dead_letters"] == {"open": 1, "last_error": job.dead_letter_error, "blocked": True}
    assert job_id not in {j.job_id for j, _ in await db.jobs.stalled(0.0)}
    assert await db.pool.fetchval("SELECT count(*) FROM conversations WHERE job_id = $1", job_id) == job.conversations - 1

    letters = [letter for letter in (await runtime.dead_letters.on_broker()).values()
               if letter.key == f"{user_id}:{poison}".encode()]
    assert len(letters) == 1
    letter = letters[0]
    assert letter.topic == f"{settings.topic_prefix}.conversations" and letter.stage == "chunker"
    assert letter.error_class == "builtins.ValueError" and letter.error_message == f"cannot chunk {poison}"
    assert letter.partition >= 0 and letter.offset >= 0 and letter.attempts == 1
    assert json.loads(letter.value)["conversation_id"] == poison  # the original value, byte for byte

    listed = await cli(settings, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    mine = [d for d in json.loads(listed.stdout)["dead_letters"] if d["job_id"] == job_id]
    assert [(d["id"], d["stage"], d["replayed"], d["on_broker"], d["offset"]) for d in mine] == [
        (letter.id, "chunker", False, True, letter.offset)]

    monkeypatch.setattr(chunker_agent, "chunk_conversation", real)  # the fix
    replayed = await cli(settings, "dlq", "replay", "--id", letter.id)
    assert replayed.returncode == 0, replayed.stderr
    job = await wait_until(lambda: db.jobs.get(job_id), job_finished, what="the job to finish after the replay")
    assert job.status == "complete" and job.full_pass_status == "complete" and job.dead_letters == 0
    assert job.conversations_chunked == job.conversations

    # Replayed once: --all does not send it again.
    again = await cli(settings, "dlq", "replay", "--all")
    assert again.returncode == 0 and letter.id not in again.stdout
    listed = json.loads((await cli(settings, "dlq", "list", "--json")).stdout)["dead_letters"]
    assert [d["replayed"] for d in listed if d["id"] == letter.id] == [True]
