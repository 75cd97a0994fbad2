"""Tokens, principals and row-level security, on the real Postgres.

The isolation tests read as the query service does (a reader session for A)
and ask for B's rows by name: the SQL's own `user_id = $1` check is what a bug
would lose, so here it is replaced by one naming the other person, and the
database alone must still return nothing. The embedded cluster's user is a
superuser (RLS does not apply to it even when forced), so the pipeline is
also run once as a non-superuser owner, for whom FORCE does apply.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from soulprint.models.access import AccessDenied, Principal
from soulprint.runtime import build_runtime
from soulprint.services.auth import Authenticator
from soulprint.services.db import Database
from support.pipeline import import_and_wait
from support.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-export.zip"

# The migration's rule (soulprint_protect): a table with a user_id is scoped by it,
# one with only a job_id by its job's person.
PER_PERSON_TABLES = """
SELECT c.relname AS name, bool_or(a.attname = 'user_id') AS by_user, c.relrowsecurity, c.relforcerowsecurity,
       has_table_privilege('soulprint_reader', c.oid, 'SELECT') AS readable
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND NOT a.attisdropped
 WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace AND a.attname IN ('user_id', 'job_id')
 GROUP BY c.oid, c.relname ORDER BY c.relname
"""


# Every per-person table at 0010_access.sql that an import of the sample (plus the fixture's rows) fills.
FILLED_BY_AN_IMPORT = {"api_tokens", "chunk_embeddings", "consolidated_facts", "conversation_chunks",
                       "conversation_payloads", "conversations", "fact_extractions", "facts", "import_jobs",
                       "llm_batch_requests", "llm_usage", "memories", "people", "query_soulprints",
                       "soulprint_versions", "soulprints"}


def _scope(table, person: str, job: str) -> tuple[str, list[str]]:
    """The condition for one person's rows of ``table`` (by user, or by the person's job), and its $1."""
    return ("user_id = ANY($1::text[])", [person]) if table["by_user"] else ("job_id = ANY($1::text[])", [job])


# -- principals (unit) -------------------------------------------------------------


def test_a_person_token_acts_only_for_its_person():
    p = Principal(user_id="ann", token_id="t1")
    assert p.acting_for(None) == "ann"
    assert p.acting_for("ann") == "ann"
    with pytest.raises(AccessDenied):
        p.acting_for("bob")


def test_the_operator_token_acts_for_the_person_it_names():
    op = Principal(user_id=None, admin=True)
    assert op.acting_for("bob") == "bob"
    for missing in (None, ""):
        with pytest.raises(AccessDenied):
            op.acting_for(missing)


# -- tokens ------------------------------------------------------------------------


async def test_tokens_are_created_resolved_and_revoked(db, user_id):
    token_id, token = await db.tokens.create(user_id, "laptop")
    assert token.startswith(f"sp_{token_id}_") and len(token) > 40
    assert await db.tokens.resolve(token) == Principal(user_id=user_id, token_id=token_id)

    row = await db.pool.fetchrow("SELECT * FROM api_tokens WHERE token_id = $1", token_id)
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps({k: str(v) for k, v in row.items()})  # stored hashed only
    assert (row["user_id"], row["label"], row["revoked_at"]) == (user_id, "laptop", None)

    other_id, other = await db.tokens.create(user_id)
    assert other != token and other_id != token_id
    assert await db.tokens.resolve(token[:-1]) is None
    assert await db.tokens.resolve("sp_unknown_secret") is None

    assert await db.tokens.revoke(token_id)  # by id
    assert await db.tokens.resolve(token) is None
    assert await db.tokens.resolve(other) == Principal(user_id=user_id, token_id=other_id)  # the other lives on
    first = await db.pool.fetchval("SELECT revoked_at FROM api_tokens WHERE token_id = $1", token_id)
    assert await db.tokens.revoke(token)  # by the token itself, again: still revoked, same time
    assert await db.pool.fetchval("SELECT revoked_at FROM api_tokens WHERE token_id = $1", token_id) == first
    assert await db.tokens.revoke(other)
    assert await db.tokens.resolve(other) is None
    assert not await db.tokens.revoke("sp_nope_nope")
    with pytest.raises(ValueError):
        await db.tokens.create("  ")


async def test_the_authenticator_knows_the_operator_and_person_tokens(db, user_id):
    auth = Authenticator(db.tokens, "operator-secret")
    token_id, token = await db.tokens.create(user_id)
    assert await auth.authenticate("operator-secret") == Principal(user_id=None, admin=True)
    assert await auth.authenticate(token) == Principal(user_id=user_id, token_id=token_id)
    for bad in (None, "", "operator-secre", "operator-secret ", "sp_x_y"):
        assert await auth.authenticate(bad) is None
    await db.tokens.revoke(token_id)
    assert await auth.authenticate(token) is None
    # No operator token configured: nothing is the operator.
    assert await Authenticator(db.tokens, None).authenticate("operator-secret") is None


def _cli(args, data_dir: Path, database_url: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOULPRINT_")}
    env.update(SOULPRINT_DATA_DIR=str(data_dir), SOULPRINT_DATABASE_URL=database_url)
    return subprocess.run([sys.executable, "-m", "soulprint.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


async def test_token_commands(db, stack_settings, tmp_path, user_id):
    made = _cli(["token", "create", "--user", user_id, "--label", "phone", "--json"], tmp_path, stack_settings.database_url)
    assert made.returncode == 0, made.stderr
    out = json.loads(made.stdout)
    assert (out["user"], out["label"]) == (user_id, "phone")
    assert await db.tokens.resolve(out["token"]) == Principal(user_id=user_id, token_id=out["token_id"])

    plain = _cli(["token", "create", "--user", user_id], tmp_path, stack_settings.database_url)
    assert plain.returncode == 0, plain.stderr
    (token,) = plain.stdout.split()  # the token alone on stdout; the note goes to stderr
    assert (await db.tokens.resolve(token)).user_id == user_id

    for name in (out["token_id"], token):
        revoked = _cli(["token", "revoke", name], tmp_path, stack_settings.database_url)
        assert revoked.returncode == 0, revoked.stderr
    assert await db.tokens.resolve(out["token"]) is None and await db.tokens.resolve(token) is None

    for args, line in ((["token", "revoke", "no-such-token"], "soulprint: error: no such token: 'no-such-token'"),
                       (["token", "create", "--user", " "], "soulprint: error: --user must name a person")):
        bad = _cli(args, tmp_path, stack_settings.database_url)
        assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [line]


# -- row-level security ------------------------------------------------------------


async def test_every_per_person_table_has_forced_row_level_security(db):
    tables = await db.pool.fetch(PER_PERSON_TABLES)
    names = {t["name"] for t in tables}
    assert {"import_jobs", "conversation_chunks", "chunk_embeddings", "facts", "fact_extractions",
            "conversation_payloads", "query_soulprints", "api_tokens"} <= names
    assert [t["name"] for t in tables if not (t["relrowsecurity"] and t["relforcerowsecurity"])] == []
    policies = await db.pool.fetch(
        "SELECT tablename, array_agg(policyname::text ORDER BY policyname) AS names FROM pg_policies"
        " WHERE schemaname = current_schema() GROUP BY tablename")
    assert {p["tablename"]: p["names"] for p in policies if p["tablename"] in names} == {
        n: ["person", "pipeline"] for n in names}
    # The query service reads what search, facts and the view need; never tokens or payloads.
    readable = {t["name"] for t in tables if t["readable"]}
    assert {"conversation_chunks", "chunk_embeddings", "query_soulprints"} <= readable
    assert not readable & {"api_tokens", "conversation_payloads", "llm_usage", "llm_batch_requests"}


async def _imported(rt, user_id: str):
    job = await import_and_wait(rt, user_id, SAMPLE)
    assert job.status == "complete" and job.full_pass_status == "complete", job.error or job.full_pass_error
    # The query lane's view catches up with the full pass's v2 on its own consumer group.
    await wait_until(lambda: _view_version(rt.db, user_id), lambda v: v == 2, what=f"{user_id}'s view at v2")
    return job


async def _view_version(db, user_id: str):
    async with db.reader.session(user_id) as conn:
        view = await db.view.get(conn, user_id)
    return view and view.version


@pytest.fixture(scope="module")
async def two_people(runtime, db):
    """Ann and Bob with a whole import each, and a row of Bob's in each table the pipeline has emptied again."""
    ann, bob = f"ann-{uuid.uuid4().hex[:8]}", f"bob-{uuid.uuid4().hex[:8]}"
    jobs = {u: (await _imported(runtime, u)).job_id for u in (ann, bob)}
    for u in (ann, bob):
        await db.tokens.create(u)
        await db.pool.execute("INSERT INTO conversation_payloads (job_id, conversation_id, user_id, payload)"
                              " VALUES ($1, 'test-only', $2, '\\x5b5d')", jobs[u], u)
        await db.pool.execute("INSERT INTO llm_batch_requests (endpoint, batch_id, custom_id, job_id)"
                              " VALUES ('test-only', 'b', $1, $1)", jobs[u])
        await db.pool.execute("INSERT INTO llm_usage (job_id, stage, provider, model) VALUES ($1, 'test-only', 'x', 'x')"
                              " ON CONFLICT DO NOTHING", jobs[u])
    yield (ann, jobs[ann]), (bob, jobs[bob])
    for table, column in (("conversation_payloads", "conversation_id"), ("llm_batch_requests", "endpoint"),
                          ("llm_usage", "stage")):
        await db.pool.execute(f"DELETE FROM {table} WHERE job_id = ANY($1::text[]) AND {column} = 'test-only'",
                              list(jobs.values()))


async def test_a_reader_session_never_returns_another_persons_rows(db, two_people):
    (ann, ann_job), (bob, bob_job) = two_people
    tables = await db.pool.fetch(PER_PERSON_TABLES)
    for t in tables:
        # The owner sees both people's rows: the zeros below are RLS's doing, not an empty table.
        # (Tables a small import leaves empty, such as a large import's own HNSW index list, are
        # still checked below; they only cannot show it.)
        held = []
        for person, job in ((ann, ann_job), (bob, bob_job)):
            where, arg = _scope(t, person, job)
            held.append(await db.pool.fetchval(f"SELECT count(*) FROM {t['name']} WHERE {where}", arg) > 0)
        assert all(held) or t["name"] not in FILLED_BY_AN_IMPORT, (t["name"], held)
        if not t["readable"]:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with db.reader.session(ann) as conn:
                    await conn.fetchval(f"SELECT count(*) FROM {t['name']}")
            continue
        async with db.reader.session(ann) as conn:
            # The query asks for Bob's rows by name: the database still answers for Ann only.
            where, arg = _scope(t, bob, bob_job)
            assert await conn.fetchval(f"SELECT count(*) FROM {t['name']} WHERE {where}", arg) == 0, t["name"]
            everything = await conn.fetchval(f"SELECT count(*) FROM {t['name']}")
            where, arg = _scope(t, ann, ann_job)
            own = await conn.fetchval(f"SELECT count(*) FROM {t['name']} WHERE {where}", arg)
            assert everything == own and (own > 0 or not held[0]), t["name"]
    async with db.reader.session(ann) as conn:
        assert await db.view.get(conn, bob) is None
        assert (await db.view.get(conn, ann)).user_id == ann
        # A vector search written without any person in it (a bug) finds only Ann's chunks.
        found = await conn.fetch(
            "SELECT DISTINCT k.user_id FROM chunk_embeddings e"
            " JOIN conversation_chunks k ON (k.job_id, k.chunk_id) = (e.job_id, e.chunk_id)")
        assert [r["user_id"] for r in found] == [ann]
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await conn.execute("DELETE FROM query_soulprints")


async def test_a_reader_without_a_person_sees_nothing(db, two_people):
    tables = [t for t in await db.pool.fetch(PER_PERSON_TABLES) if t["readable"]]
    async with db.pool.acquire() as conn, conn.transaction(readonly=True):
        await conn.execute("SET LOCAL ROLE soulprint_reader")
        for t in tables:
            assert await conn.fetchval(f"SELECT count(*) FROM {t['name']}") == 0, t["name"]
    with pytest.raises(ValueError):
        async with db.reader.session(""):
            pass


async def test_a_session_leaves_no_role_or_person_on_the_pooled_connection(db, two_people):
    (ann, _), _ = two_people
    async with db.reader.session(ann) as conn:
        assert await conn.fetchval("SELECT current_user") == "soulprint_reader"
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT current_user") != "soulprint_reader"
        assert not await conn.fetchval("SELECT current_setting('soulprint.user_id', true)")


def _as_role(url: str, role: str, password: str, database: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, f"{role}:{password}@{host}", f"/{database}", parts.query, ""))


async def test_a_non_superuser_owner_runs_the_pipeline_under_forced_rls(stack_settings, db):
    """FORCE applies to a table owner that is no superuser (a managed Postgres): its own policy lets it work."""
    name = f"sp_owner_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    await db.pool.execute(f"CREATE ROLE {name} LOGIN NOSUPERUSER PASSWORD '{password}'")
    await db.pool.execute(f"GRANT soulprint_reader TO {name}")  # what an administrator does once
    await db.pool.execute(f"CREATE DATABASE {name} OWNER {name}")
    prepared = await asyncpg.connect(_as_role(stack_settings.database_url, *_superuser(stack_settings), name))
    await prepared.execute("CREATE EXTENSION IF NOT EXISTS vector")  # untrusted: a superuser's job
    await prepared.close()
    settings = dataclasses.replace(stack_settings, database_url=_as_role(stack_settings.database_url, name, password, name),
                                   app_id=f"{stack_settings.app_id}-owner", topic_prefix=f"{stack_settings.topic_prefix}o")
    rt = await build_runtime(settings)
    try:
        assert not await rt.db.pool.fetchval("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")
        await rt.start()
        ann, bob = "ann", "bob"
        job = await _imported(rt, ann)
        assert job.embedding_status == "complete"
        async with rt.db.reader.session(bob) as conn:
            for t in await rt.db.pool.fetch(PER_PERSON_TABLES):
                if t["readable"]:
                    assert await conn.fetchval(f"SELECT count(*) FROM {t['name']}") == 0, t["name"]
    finally:
        await rt.stop()
        await rt.db.close()
        await db.pool.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await db.pool.execute(f"DROP ROLE {name}")


def _superuser(settings) -> tuple[str, str]:
    parts = urlsplit(settings.database_url)
    return parts.username or "postgres", parts.password or ""


async def test_reader_sessions_plan_each_query_and_full_text_can_use_its_index(db, user_id):
    # Under row-level security only a LEAKPROOF operator may be an index condition; the
    # embedded Postgres runs migrations as a superuser, so 0013 marks `@@` so.
    assert await db.pool.fetchval("SELECT proleakproof FROM pg_proc WHERE proname = 'ts_match_vq'")
    async with db.reader.session(user_id) as conn:
        assert await conn.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
    async with db.pool.acquire() as conn:  # LOCAL: the pooled connection is back to the default
        assert await conn.fetchval("SHOW plan_cache_mode") == "auto"
