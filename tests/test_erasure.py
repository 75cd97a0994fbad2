"""Erasure: `soulprint delete-user` and DELETE /v1/people/{id} leave nothing of the person, anywhere.

A worker of its own talks to the fake Anthropic server, so the response cache
and the usage rows are filled as in production. Person B imports a small
export once; each test imports the sample (with a phrase only this person's
copy holds) for a new person A, uploaded into storage, asks a question, then
erases A. Then every table of the schema, found from the catalog, is searched
for A's id, A's job ids and A's phrase (every column, as text); B's rows are
counted before and after; A's old events are produced again onto their topics
and, once every consumer group has read them, the search is run again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import random
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from soulprint.models.events import ConversationChunked, ImportRequested
from soulprint.models.query import SearchRequest
from soulprint.reporting import job_finished
from soulprint.runtime import api_context, build_query_service, http_app
from soulprint.services.auth import Authenticator
from soulprint.services.db.erasure import IMPERSONAL, KEPT, SPECIAL, person_hash, person_tables
from soulprint.services.http import people
from soulprint.services.http.health import Health
from soulprint.services.http.tus import ResumableUploads
from soulprint.services.imports import ImportService
from soulprint.services.lag import consumer_lag
from soulprint.topics.stages import Lane
from support.fake_anthropic import FakeAnthropicServer
from support.pipeline import running
from support.waiting import wait_until
from test_http import TIMEOUT, bearer, serve
from test_http_isolation import write_export

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-export.zip"
ADMIN = "operator-token-for-the-erasure-tests-0123456789"
TEXTUAL = ("text", "character varying", "jsonb", "json", "bytea", "ARRAY", "tsvector", "USER-DEFINED")


# -- unit --------------------------------------------------------------------------


def test_the_ledger_keeps_a_hash_not_the_id():
    assert person_hash("ann@example.com") == person_hash("ann@example.com")
    assert person_hash("ann@example.com") != person_hash("bob@example.com")
    assert "ann" not in person_hash("ann@example.com")


# -- the stack ---------------------------------------------------------------------


@pytest.fixture(scope="module")
async def worker(stack_settings):
    """A worker whose LLM is the fake Anthropic server (cache and usage rows as in production)."""
    async with FakeAnthropicServer(seed=10) as server:
        tag = uuid.uuid4().hex[:8]
        llm = dataclasses.replace(stack_settings.llm, api_key="test-key", base_url=server.url,
                                  fast_model=f"claude-haiku-4-5-erase-{tag}")
        settings = dataclasses.replace(stack_settings, app_id=f"erase-{tag}", topic_prefix=f"e{tag}", llm=llm)
        async with running(settings) as rt:
            yield rt


@pytest.fixture(scope="module")
async def person_b(worker, tmp_path_factory):
    """(user, token, search words) of a person who stays."""
    tag = uuid.uuid4().hex[:10]
    export = write_export(tmp_path_factory.mktemp("erasure") / "b.json", tag, random.Random(3))
    user = f"keep-{tag}"
    job = await _import(worker, user, export.read_bytes())
    assert job.status == "complete", job.error
    _, token = await worker.db.tokens.create(user, "erasure")
    return user, token


@pytest.fixture(scope="module")
async def api(worker):
    ctx = api_context(worker.settings, worker.db, Authenticator(worker.db.tokens, ADMIN),
                      Health(worker.settings, worker.db, None, None), worker.storage, None)
    server = await serve(http_app(ctx, (people,)))
    yield server.url
    await server.stop()


async def _import(rt, user: str, export: bytes):
    """Upload ``export`` into storage as the upload service does, and wait for the job and the view."""
    async def body():
        yield export

    async with ImportService(rt.settings, rt.db, rt.storage) as imports:
        job = await imports.submit(user, body(), way="raw")
    job = await wait_until(lambda: rt.db.jobs.get(job.job_id), job_finished, limit_s=300,
                           what=f"import {job.job_id} to finish")
    await wait_until(lambda: rt.db.view.caught_up(user), bool, what=f"the view of {user}")
    return job


def marked_sample(phrase: str) -> bytes:
    """The sample export with ``phrase`` added to its first user message: a text only this copy holds."""
    out = io.BytesIO()
    with zipfile.ZipFile(SAMPLE) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "conversations.json":
                conversations = json.loads(data)
                for node in conversations[0]["mapping"].values():
                    message = node.get("message") or {}
                    parts = (message.get("content") or {}).get("parts") or []
                    if message.get("author", {}).get("role") == "user" and parts and isinstance(parts[0], str):
                        parts[0] = f"{parts[0]} {phrase}"
                        break
                data = json.dumps(conversations).encode()
            dst.writestr(item, data)
    return out.getvalue()


@dataclasses.dataclass
class PersonA:
    user: str
    token: str
    phrase: str
    jobs: list[str]
    events: list[tuple[str, bytes | None, bytes, list]]  # (topic, key, value, headers) of A's events
    before: dict[str, int]  # A's rows per person table (llm_cache: the entries linked to A)
    part: Path  # the bytes of A's unfinished resumable upload


@pytest.fixture
async def person_a(worker, person_b):
    tag = uuid.uuid4().hex[:10]
    user, phrase = f"gone-{tag}", f"quokka{tag}zanzibar"
    job = await _import(worker, user, marked_sample(phrase))
    assert job.status == "complete", job.error
    _, token = await worker.db.tokens.create(user, "erasure")
    # A question: its cached answer is made of A's soulprint and passages.
    await build_query_service(worker).ask(user, f"What did I say about {phrase}?")
    jobs = [r["job_id"] for r in await worker.db.pool.fetch("SELECT job_id FROM import_jobs WHERE user_id = $1", user)]
    events = await _events_of(worker.settings, [user, *jobs])
    assert {topic.rsplit(".", 1)[-1] for topic, *_ in events} >= {"imports", "conversations", "chunks", "facts"}
    assert await worker.storage.list_person(user)
    # Half an export sent over tus, not finished: its bytes wait in a part file.
    uploads = ResumableUploads(worker.db, worker.settings)
    upload = await uploads.create(user, 10_000, {"filename": "export.zip"})
    part = uploads.files.path(upload.upload_id)
    part.write_bytes(f'{{"title": "{phrase}"'.encode())
    # The search sees A everywhere A is (so that finding nothing afterwards means something).
    assert set(await mentions(worker.db.pool, [user, *jobs, phrase])) >= {
        "import_jobs", "conversations", "conversation_chunks", "chunk_embeddings", "facts", "soulprint_versions",
        "query_soulprints", "api_tokens", "llm_cache_people", "llm_usage", "notices"}
    return PersonA(user, token, phrase, jobs, events, await _rows_of(worker.db.pool, user, jobs), part)


# -- what the catalog says ------------------------------------------------------------


async def _tables(pool) -> dict[str, list[tuple[str, str]]]:
    """Every table of the schema: its columns (name, type)."""
    rows = await pool.fetch(
        "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c"
        " JOIN information_schema.tables t USING (table_schema, table_name)"
        " WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'"
        " ORDER BY c.table_name, c.ordinal_position")
    tables: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        tables.setdefault(r["table_name"], []).append((r["column_name"], r["data_type"]))
    return tables


async def mentions(pool, needles: list[str]) -> dict[str, int]:
    """{table: rows} of every table holding a row with any needle in any column (bytea read as text);
    the erasure's own notice (KEPT) aside."""
    found = {}
    for table, columns in (await _tables(pool)).items():
        text = " || ' ' || ".join([f'coalesce(t::text, \'\')'] + [
            f"coalesce(encode(t.\"{name}\", 'escape'), '')" for name, kind in columns if kind == "bytea"])
        kept = f" AND NOT ({KEPT[table]})" if table in KEPT else ""
        n = await pool.fetchval(
            f'SELECT count(*) FROM "{table}" t WHERE EXISTS'
            f" (SELECT 1 FROM unnest($1::text[]) n WHERE strpos({text}, n) > 0){kept}", needles)
        if n:
            found[table] = n
    return found


async def _rows_of(pool, user: str, jobs: list[str]) -> dict[str, int]:
    async with pool.acquire() as conn:
        tables = await person_tables(conn)
    counts = {}
    for t in tables:
        person = " OR ".join(c for c, on in (("user_id = $1", t["by_user"]), ("job_id = ANY($2::text[])",
                                                                              t["by_job"])) if on)
        kept = f" AND NOT ({KEPT[t['name']]})" if t["name"] in KEPT else ""
        counts[t["name"]] = await pool.fetchval(
            f'SELECT count(*) FROM "{t["name"]}" WHERE ({person}){kept} AND $1::text IS NOT NULL'
            " AND $2::text[] IS NOT NULL", user, jobs)
    counts["llm_cache"] = await pool.fetchval(
        "SELECT count(*) FROM llm_cache WHERE key IN (SELECT key FROM llm_cache_people WHERE user_id = $1)", user)
    return counts


async def test_every_table_is_reached_by_erasure_or_holds_no_persons_text(db):
    """A table with neither a user_id nor a job_id column, holding text, is erased by no one: a leak."""
    unreached = {table for table, columns in (await _tables(db.pool)).items()
                 if not {"user_id", "job_id"} & {name for name, _ in columns}
                 and any(kind in TEXTUAL for _, kind in columns)
                 and table not in IMPERSONAL and table not in SPECIAL}
    assert unreached == set(), f"tables holding text that erasure cannot reach: {sorted(unreached)}"


# -- Kafka: A's events, and producing them again ------------------------------------


async def _events_of(settings, needles: list[str]) -> list[tuple[str, bytes | None, bytes, list]]:
    """Every record on our topics whose value names one of ``needles``, from the beginning."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        topics = [t for t in await consumer.topics() if t.startswith(f"{settings.topic_prefix}.")]
        partitions = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        found = []
        for tp in partitions:
            while await consumer.position(tp) < end[tp]:
                for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                    if record.offset < end[tp] and any(n.encode() in record.value for n in needles):
                        found.append((tp.topic, record.key, record.value, list(record.headers or [])))
        return found
    finally:
        await consumer.stop()


async def replay(rt, events) -> None:
    """Produce ``events`` again and wait until every consumer group has read past them."""
    producer = AIOKafkaProducer(bootstrap_servers=rt.settings.kafka_bootstrap,
                                max_request_size=rt.settings.max_event_bytes)
    await producer.start()
    try:
        for topic, key, value, headers in events:
            await producer.send_and_wait(topic, value, key=key, headers=headers or None)
    finally:
        await producer.stop()
    groups = [rt.settings.app_id if lane is Lane.BULK else f"{rt.settings.app_id}-{lane.value}" for lane in Lane]
    topics = {topic for topic, *_ in events}

    async def lag():
        return await consumer_lag(rt.settings.kafka_bootstrap, groups, rt.settings.topic_prefix)

    await wait_until(lag, lambda now: all(n == 0 for (_, t), n in now.items() if t in topics), limit_s=180,
                     what="every consumer group to read the replayed events")


# -- the checks both ways of erasing share -------------------------------------------


async def check_erased(rt, a: PersonA, receipt: dict, b_before: dict[str, int], b_user: str, b_jobs) -> None:
    pool = rt.db.pool
    assert receipt["user_id"] == a.user and receipt["erased_at"]
    assert {t: n for t, n in receipt["tables"].items() if n} == {t: n for t, n in a.before.items() if n}
    assert receipt["files"] >= 2  # the stored export and the unfinished upload's part file
    for table in ("tus_uploads", "import_jobs", "conversations", "conversation_chunks", "chunk_embeddings", "facts",
                  "consolidated_facts", "memories", "soulprint_versions", "query_soulprints", "api_tokens",
                  "llm_cache", "llm_usage"):
        assert receipt["tables"].get(table), f"{table}: nothing erased ({receipt['tables']})"

    needles = [a.user, *a.jobs, a.phrase]
    assert await mentions(pool, needles) == {}
    assert await rt.storage.list_person(a.user) == []
    assert not a.part.exists()  # the unfinished upload's bytes went with the erasure, not at a later sweep
    assert await rt.db.tokens.resolve(a.token) is None
    assert await rt.db.erasure.is_erased(a.user)
    notice = await pool.fetchrow("SELECT data FROM notices WHERE type = 'person.deleted' AND user_id = $1", a.user)
    assert notice is not None and notice["data"]["tables"] == receipt["tables"]
    # The cost history stays, without the person.
    assert await pool.fetchval("SELECT sum(requests) FROM llm_usage WHERE job_id = '(erased)'") > 0

    # B is untouched, and B's search still finds B's history.
    assert await _rows_of(pool, b_user, b_jobs) == b_before
    hits = await build_query_service(rt).search(b_user, SearchRequest(query="lentil soup river novel balcony"))
    assert hits["hits"]

    # A's old events, from the beginning, bring nothing back.
    await replay(rt, a.events)
    assert await mentions(pool, needles) == {}
    assert await _rows_of(pool, b_user, b_jobs) == b_before


async def _b(rt, b_user):
    jobs = [r["job_id"] for r in await rt.db.pool.fetch("SELECT job_id FROM import_jobs WHERE user_id = $1", b_user)]
    return jobs, await _rows_of(rt.db.pool, b_user, jobs)


# -- the two ways ------------------------------------------------------------------------


async def test_delete_user_at_the_cli_erases_everything_and_replay_brings_nothing_back(worker, person_b, person_a):
    b_user, _ = person_b
    b_jobs, b_before = await _b(worker, b_user)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOULPRINT_")}
    env |= {"SOULPRINT_DATA_DIR": str(worker.settings.data_dir), "SOULPRINT_DATABASE_URL": worker.settings.database_url,
            "SOULPRINT_STORAGE": str(worker.storage.root)}
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "soulprint.cli", "delete-user", person_a.user,
                                                    "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    await check_erased(worker, person_a, json.loads(done.stdout), b_before, b_user, b_jobs)

    again = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "soulprint.cli", "delete-user",
                                                     person_a.user], capture_output=True, text=True, env=env,
                                    timeout=300)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"erased {person_a.user} at ") and ": 0 rows from 0 tables, 0 files" in again.stdout


async def test_delete_over_http_erases_only_the_tokens_own_person(worker, person_b, person_a, api):
    b_user, b_token = person_b
    b_jobs, b_before = await _b(worker, b_user)
    async with httpx.AsyncClient(base_url=api, timeout=TIMEOUT) as http:
        # Another person's token: that person is not found (not forbidden), and nothing happens.
        refused = await http.delete(f"/v1/people/{person_a.user}", headers=bearer(b_token))
        assert refused.status_code == 404 and refused.json()["error"]["type"] == "not_found_error"
        assert await worker.db.tokens.resolve(person_a.token) is not None
        assert (await http.delete(f"/v1/people/{person_a.user}")).status_code == 401

        answer = await http.delete(f"/v1/people/{person_a.user}", headers=bearer(person_a.token))
        assert answer.status_code == 200, answer.text
        await check_erased(worker, person_a, answer.json(), b_before, b_user, b_jobs)

        # The token went with the person.
        assert (await http.delete(f"/v1/people/{person_a.user}", headers=bearer(person_a.token))).status_code == 401
        # The operator may erase anyone; again is no error.
        again = await http.delete(f"/v1/people/{person_a.user}", headers=bearer(ADMIN))
        assert again.status_code == 200 and sum(again.json()["tables"].values()) == 0


async def test_a_person_erased_can_come_back_with_a_new_import(worker, tmp_path):
    """An import requested after the erasure is the person coming back: it runs. One requested before it
    (a replay) and a job-keyed event of a job that is gone are dropped."""
    tag = uuid.uuid4().hex[:10]
    user = f"back-{tag}"
    first = await _import(worker, user, write_export(tmp_path / "1.json", tag, random.Random(5)).read_bytes())
    await worker.db.erasure.delete_person(user)
    assert await worker.db.erasure.drops(ImportRequested(job_id=first.job_id, user_id=user, requested_at=1.0))
    assert await worker.db.erasure.drops(ConversationChunked(job_id=first.job_id, user_id=user))
    again = await _import(worker, user, write_export(tmp_path / "2.json", tag + "b", random.Random(6)).read_bytes())
    assert again.status == "complete", again.error
    assert not await worker.db.erasure.drops(ConversationChunked(job_id=again.job_id, user_id=user))
    assert (await worker.db.soulprints.get(user)) is not None
