"""Notices and webhooks: the outbox, Standard Webhooks signatures, retries, 410, Retry-After, dead letters, SSRF.

The integration tests run their own worker (its own database, topics and consumer groups) with tiny
retry delays and 127.0.0.1 allowed as a target, and a real HTTP receiver on a free local port that
verifies every signature with the `standardwebhooks` package.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from soulprint.models.events import JobNotice
from soulprint.models.jobs import EmbeddingStatus, FullPassStatus, JobStatus, QuickStatus
from soulprint.services.db.notices import record_notice
from soulprint.services.metrics import METRICS
from soulprint.services.deadletters import Letter, read_topic, topic_name
from soulprint.services.webhooks import (TargetRefused, backoff_s, check_target, new_secret, notice_body,
                                         retry_after_s, sign)
from soulprint.settings import WebhookConfig
from soulprint.topics import DEAD_LETTERS, NOTICES
from support.pipeline import import_and_wait, publish_import, running
from support.waiting import wait_until
from support.webhook_receiver import WebhookReceiver

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-export.zip"
MAX_ATTEMPTS = 4


# -- signing, bodies, back-off, Retry-After, SSRF (unit) ------------------------------------------


def test_signature_verifies_with_standardwebhooks():
    secret = new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) >= 24
    body, ts = '{"type":"soulprint.complete"}', int(time.time())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(ts), "webhook-signature": sign(secret, "msg_1", ts, body)}
    assert Webhook(secret).verify(body, headers) == {"type": "soulprint.complete"}
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_body_is_thin_and_links_the_status():
    notice = JobNotice(notice_id="ntc_1", type="soulprint.quick_ready", user_id="ann", job_id="j1",
                       data={"job_id": "j1", "user_id": "ann"}, created_at=1700000000.0)
    body = json.loads(notice_body(notice, "https://sp.example"))
    assert body == {"type": "soulprint.quick_ready", "timestamp": "2023-11-14T22:13:20Z",
                    "data": {"job_id": "j1", "user_id": "ann", "status_url": "https://sp.example/v1/imports/j1"}}
    assert "status_url" not in json.loads(notice_body(notice, None))["data"]


def test_backoff_is_full_jitter_under_the_cap():
    config = WebhookConfig(retry_base_s=1.0, retry_cap_s=10.0)
    for attempt in (1, 2, 3, 8):
        ceiling = min(10.0, 2 ** (attempt - 1))
        delays = [backoff_s(attempt, config) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays) and max(delays) > ceiling / 2


def test_retry_after_seconds_or_http_date():
    assert retry_after_s("120") == 120.0
    when = datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert retry_after_s(format_datetime(when, usegmt=True), now=when.timestamp() - 30) == 30.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None


@pytest.mark.parametrize("url", ["http://10.1.2.3/hook", "http://169.254.169.254/latest/meta-data",
                                 "http://localhost:8080/hook", "http://127.0.0.1/hook", "http://[::1]/hook",
                                 "http://0.0.0.0/hook", "http://192.168.1.1/", "http://[::ffff:10.0.0.1]/",
                                 "ftp://example.com/hook", "file:///etc/passwd", "not a url"])
async def test_private_and_odd_targets_are_refused(url):
    with pytest.raises(TargetRefused):
        await check_target(url, ())


async def test_allowed_hosts_and_public_addresses_pass():
    await check_target("http://localhost:9/hook", ("localhost",))
    await check_target("https://93.184.215.14/hook", ())  # a public address: no DNS needed


# -- the outbox's "done" is the CLI's ---------------------------------------------------------------


async def test_the_triggers_finished_is_the_models(db):
    """soulprint_job_finished (migration 0016) says what models.jobs.Job.finished says, for every state."""
    job_id = f"finished-{uuid.uuid4().hex[:8]}"
    await db.jobs.create(job_id, f"nobody-{job_id}", "file:///nowhere")
    job = await db.jobs.get(job_id)
    for combo in itertools.product(JobStatus, QuickStatus, FullPassStatus, EmbeddingStatus):
        states = dict(zip(("status", "quick_status", "full_pass_status", "embedding_status"), combo))
        # The job's row with these four states (jsonb_populate_record: the row gives every other column).
        in_sql = await db.pool.fetchval(
            "SELECT soulprint_job_finished(jsonb_populate_record(j, $2::jsonb)) FROM import_jobs j WHERE job_id = $1",
            job_id, {k: str(v) for k, v in states.items()})
        assert in_sql == dataclasses.replace(job, **states).finished, states


# -- the pipeline to a real receiver ----------------------------------------------------------------


@pytest.fixture(scope="module")
async def hooks_rt(stack_settings):
    """A worker of its own (database, topics, consumer groups) with tiny retry delays and 127.0.0.1 allowed."""
    name = f"webhooks_{uuid.uuid4().hex[:6]}"
    base, _, tail = stack_settings.database_url.rpartition("/")
    query = tail.partition("?")[2]
    settings = dataclasses.replace(
        stack_settings, database_url=f"{base}/{name}" + (f"?{query}" if query else ""),
        app_id=f"{stack_settings.app_id}-{name}", topic_prefix=name,
        webhooks=WebhookConfig(allow_hosts=("127.0.0.1",), retry_base_s=0.01, retry_cap_s=0.05,
                               max_attempts=MAX_ATTEMPTS, timeout_s=5.0, poll_s=0.05),
    )
    async with running(settings) as rt:
        yield rt


@contextlib.asynccontextmanager
async def receiver(rt, events=None, script=None):
    """A receiver registered as an endpoint for the block (removed after, so tests don't share one)."""
    async with WebhookReceiver() as hook:
        endpoint = await rt.db.webhooks.add(hook.url, new_secret(), events)
        hook.secret = endpoint.secret
        if script is not None:
            hook.script = script
        try:
            yield hook, endpoint
        finally:
            await rt.db.webhooks.remove(endpoint.endpoint_id)


async def a_failed_import(rt, tmp_path, user: str) -> str:
    bad = tmp_path / f"{uuid.uuid4().hex[:6]}.json"
    bad.write_text("this is not an export")
    job_id = await publish_import(rt.settings, user, bad)
    await wait_until(lambda: rt.db.jobs.get(job_id), lambda j: j is not None and j.status == "failed",
                     what="the import to fail")
    return job_id


async def test_import_sends_signed_quick_ready_and_complete(hooks_rt, user_id):
    async with receiver(hooks_rt) as (hook, endpoint):
        job = await import_and_wait(hooks_rt, user_id, SAMPLE)
        assert job.status == "complete"
        await wait_until(lambda: _async(hook.accepted_types(job.job_id)),
                         lambda types: types == ["soulprint.complete", "soulprint.quick_ready"],
                         what="quick_ready and complete at the receiver")
    assert hook.received and all(r.verified for r in hook.received)
    for r in hook.accepted().values():
        assert r.headers["webhook-id"].startswith("msg_") and r.headers["webhook-timestamp"].isdigit()
        assert set(r.event) == {"type", "timestamp", "data"}
        assert r.event["data"]["job_id"] == job.job_id and r.event["data"]["user_id"] == user_id
    complete = next(r for r in hook.accepted().values() if r.event["type"] == "soulprint.complete")
    assert complete.event["data"]["full_pass_status"] == str(job.full_pass_status)
    soulprint = await hooks_rt.db.soulprints.get(user_id)
    assert soulprint["soulprint_text"][:200] not in "".join(r.body for r in hook.received)
    # One notice per transition, however often the transition is replayed.
    await hooks_rt.db.pool.execute("UPDATE import_jobs SET quick_status = 'ready', updated_at = now()"
                                   " WHERE job_id = $1", job.job_id)
    assert sorted(n.type for n in await hooks_rt.db.notices.for_job(job.job_id)) == [
        "soulprint.complete", "soulprint.quick_ready"]


async def test_flaky_receiver_gets_each_event_once(hooks_rt, user_id):
    """500 three times, then 200: one delivery of each event after dedupe, the same id and body every time."""
    flaky = lambda msg_id, seen: (500, {}) if seen <= 3 else (200, {})  # noqa: E731
    retried_before = _retries()
    async with receiver(hooks_rt, script=flaky) as (hook, endpoint):
        job = await import_and_wait(hooks_rt, user_id, SAMPLE)
        await wait_until(lambda: _async(hook.accepted_types(job.job_id)),
                         lambda types: types == ["soulprint.complete", "soulprint.quick_ready"],
                         what="both events through a flaky receiver")
        rows = await hooks_rt.db.webhooks.deliveries(job_id=job.job_id, endpoint_id=endpoint.endpoint_id)
    assert sorted(r.type for r in rows) == ["soulprint.complete", "soulprint.quick_ready"]
    assert all(r.status == "delivered" and r.attempts == 4 for r in rows)
    for row in rows:
        tries = [r for r in hook.received if r.msg_id == row.delivery_id]
        assert [r.answered for r in tries] == [500, 500, 500, 200]
        assert {r.body for r in tries} == {row.body} and all(r.verified for r in tries)
    assert _retries() - retried_before >= 6


async def test_person_deleted_is_delivered(hooks_rt, user_id):
    """Erasure's notice (record_notice in its transaction) reaches the endpoints like the job notices."""
    receipt = {"user_id": user_id, "erased_at": time.time(), "tables": {"import_jobs": 1}}
    async with receiver(hooks_rt, events=["person.deleted"]) as (hook, endpoint):
        async with hooks_rt.db.pool.acquire() as conn, conn.transaction():
            first = await record_notice(conn, type="person.deleted", user_id=user_id, job_id=None,
                                        data={"receipt": receipt})
            assert await record_notice(conn, type="person.deleted", user_id=user_id, job_id=None,
                                       data={"receipt": receipt}) == first
        delivered = await wait_until(lambda: _async(list(hook.accepted().values())), bool,
                                     what="person.deleted at the receiver")
    assert delivered[0].event["type"] == "person.deleted"
    assert delivered[0].event["data"] == {"user_id": user_id, "job_id": None, "receipt": receipt}


async def test_each_delivery_checks_its_target_again(hooks_rt, user_id, tmp_path):
    """An endpoint whose host is not allowed (as if its DNS changed after `webhook add`) gets nothing."""
    async with WebhookReceiver() as hook:
        endpoint = await hooks_rt.db.webhooks.add(hook.url.replace("127.0.0.1", "localhost"), new_secret(),
                                                  ["soulprint.failed"])
        try:
            job_id = await a_failed_import(hooks_rt, tmp_path, user_id)
            row = await wait_until(lambda: _one(hooks_rt, job_id, endpoint.endpoint_id),
                                   lambda r: r is not None and r.attempts >= 1 and r.last_error is not None,
                                   what="an attempt refused")
        finally:
            await hooks_rt.db.webhooks.remove(endpoint.endpoint_id)
    assert row.last_error.startswith("refused:") and row.last_status is None and hook.received == []


async def test_failed_import_sends_failed(hooks_rt, user_id, tmp_path):
    async with receiver(hooks_rt, events=["soulprint.failed"]) as (hook, endpoint):
        job_id = await a_failed_import(hooks_rt, tmp_path, user_id)
        await wait_until(lambda: _async(hook.accepted_types(job_id)), lambda t: t == ["soulprint.failed"],
                         what="soulprint.failed at the receiver")
    event = next(iter(hook.accepted().values())).event
    assert event["data"]["error_code"] == (await hooks_rt.db.jobs.get(job_id)).error_code


async def test_gone_disables_the_endpoint(hooks_rt, user_id, tmp_path):
    async with receiver(hooks_rt, events=["soulprint.failed"], script=lambda m, n: (410, {})) as (hook, endpoint):
        first = await a_failed_import(hooks_rt, tmp_path, user_id)
        await wait_until(lambda: hooks_rt.db.webhooks.endpoint(endpoint.endpoint_id), lambda e: not e.enabled,
                         what="the endpoint disabled")
        [row] = await hooks_rt.db.webhooks.deliveries(job_id=first, endpoint_id=endpoint.endpoint_id)
        assert row.status == "gone" and row.attempts == 1
        # A later notice is for enabled endpoints only: none for this one.
        second = await a_failed_import(hooks_rt, tmp_path, user_id)
        await wait_until(lambda: _published(hooks_rt, second), bool, what="the second notice published")
        async with receiver(hooks_rt, events=["soulprint.failed"]) as (other, _):
            third = await a_failed_import(hooks_rt, tmp_path, user_id)
            await wait_until(lambda: _async(other.accepted_types(third)), lambda t: t == ["soulprint.failed"],
                             what="a later notice delivered elsewhere")
        assert await hooks_rt.db.webhooks.deliveries(job_id=second, endpoint_id=endpoint.endpoint_id) == []
    assert len(hook.received) == 1


async def test_retry_after_is_honoured(hooks_rt, user_id, tmp_path):
    later = lambda m, n: (503, {"Retry-After": "120"})  # noqa: E731
    async with receiver(hooks_rt, events=["soulprint.failed"], script=later) as (hook, endpoint):
        job_id = await a_failed_import(hooks_rt, tmp_path, user_id)
        row = await wait_until(lambda: _one(hooks_rt, job_id, endpoint.endpoint_id),
                               lambda r: r is not None and r.last_status == 503, what="the first attempt answered")
    assert row.status == "pending" and row.attempts == 1
    assert (row.next_attempt_at - row.updated_at).total_seconds() == pytest.approx(120.0)


async def test_last_failure_is_a_dead_letter_and_its_replay_delivers(hooks_rt, user_id, tmp_path):
    async with receiver(hooks_rt, events=["soulprint.failed"], script=lambda m, n: (500, {})) as (hook, endpoint):
        job_id = await a_failed_import(hooks_rt, tmp_path, user_id)
        row = await wait_until(lambda: _one(hooks_rt, job_id, endpoint.endpoint_id),
                               lambda r: r is not None and r.status == "dead", what="the delivery dead")
        assert row.attempts == MAX_ATTEMPTS and len(hook.received) == MAX_ATTEMPTS
        letters = await wait_until(lambda: _letters(hooks_rt, job_id), bool, what="the dead letter on the topic")
        # The endpoint fixed, `dlq replay` sends the notice back: its dead delivery starts over, once.
        hook.script = lambda m, n: (200, {})
        letter = Letter.from_record(letters[0].key, letters[0].value, letters[0].headers)
        assert await hooks_rt.dead_letters.replay(letter.id) == [letter.id]
        await wait_until(lambda: _one(hooks_rt, job_id, endpoint.endpoint_id), lambda r: r.status == "delivered",
                         what="the replayed delivery delivered")
        assert hook.accepted_types(job_id) == ["soulprint.failed"]
        assert {r.msg_id for r in hook.received} == {row.delivery_id}
    headers = dict(letters[0].headers)
    assert headers["__connect.errors.topic"].decode() == topic_name(hooks_rt.settings, NOTICES.name)
    assert headers["__connect.errors.stage"] == b"notify"
    assert headers["__connect.errors.attempts"] == str(MAX_ATTEMPTS).encode()
    assert int(headers["__connect.errors.partition"]) == row.source_partition
    assert int(headers["__connect.errors.offset"]) == row.source_offset
    assert b"HTTP 500" in headers["__connect.errors.exception.message"]
    assert letters[0].key == user_id.encode()
    assert json.loads(letters[0].value)["notice_id"] == row.notice_id


def test_webhook_cli_adds_lists_and_removes(hooks_rt, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOULPRINT_")}
    env.update(SOULPRINT_DATA_DIR=str(tmp_path), SOULPRINT_DATABASE_URL=hooks_rt.settings.database_url,
               SOULPRINT_WEBHOOK_ALLOW_HOSTS="127.0.0.1")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "soulprint.cli", "webhook", *args], capture_output=True,
                              text=True, env=env, timeout=120)

    added = cli("add", "http://127.0.0.1:9/hook", "--event", "soulprint.complete", "--json")
    assert added.returncode == 0, added.stderr
    endpoint = json.loads(added.stdout)
    assert endpoint["secret"].startswith("whsec_") and endpoint["events"] == ["soulprint.complete"]
    listed = cli("list", "--json")
    mine = [e for e in json.loads(listed.stdout) if e["endpoint_id"] == endpoint["endpoint_id"]]
    assert mine and "secret" not in mine[0] and endpoint["secret"] not in listed.stdout
    refused = cli("add", "http://169.254.169.254/latest")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr and "private" in refused.stderr
    assert cli("add", "http://127.0.0.1:9/", "--event", "nope").returncode != 0
    assert cli("remove", endpoint["endpoint_id"]).returncode == 0
    gone = cli("remove", endpoint["endpoint_id"])
    assert gone.returncode != 0 and "no such webhook endpoint" in gone.stderr


# -- helpers ----------------------------------------------------------------------------------------


def _retries() -> float:
    return METRICS.registry.get_sample_value("soulprint_webhook_deliveries_total", {"outcome": "retry"}) or 0.0


async def _async(value):
    return value


async def _one(rt, job_id, endpoint_id):
    rows = await rt.db.webhooks.deliveries(job_id=job_id, endpoint_id=endpoint_id)
    return rows[0] if rows else None


async def _published(rt, job_id) -> bool:
    notices = await rt.db.pool.fetch("SELECT published_at FROM notices WHERE job_id = $1", job_id)
    return bool(notices) and all(n["published_at"] is not None for n in notices)


async def _letters(rt, job_id):
    records = await read_topic(rt.settings, topic_name(rt.settings, DEAD_LETTERS.name))
    return [r for r in records if dict(r.headers).get("__connect.errors.stage") == b"notify"
            and json.loads(r.value).get("job_id") == job_id]
