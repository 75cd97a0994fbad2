"""The MCP server with the official `mcp` client: streamable HTTP at /mcp (uvicorn, real sockets) and
`soulprint mcp` over stdio, on the session stack after real imports.

Alice imports the shipped sample, Bob another export; every tool call as one
of them is checked against the database's own record of whose rows it returned.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import uuid
from pathlib import Path

import httpx2
import pytest
from mcp import Client, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette
from starlette.routing import Route

from soulprint.models.query import NoSoulprint
from soulprint.runtime import build_query_service
from soulprint.services.auth import Authenticator
from soulprint.services.http.mcp import USER_HEADER, build_mcp
from soulprint.services.http.server import ApiServer, bind
from support.pipeline import import_and_wait
from support.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-export.zip"
OTHER_EXPORT = REPO / "tests" / "fixtures" / "exports" / "chatgpt_classic"
OPERATOR = f"operator-{uuid.uuid4().hex}"
TOOLS = {"search_memory", "get_soulprint", "list_memory_facts", "ask"}
SECTIONS = {"SOUL", "IDENTITY", "USER", "AGENTS", "TOOLS"}


@pytest.fixture(scope="module")
async def service(runtime):
    query = build_query_service(runtime)
    yield query
    await query.llm.aclose()


async def _current_view(service, user_id):
    try:
        return await service.soulprint(user_id)
    except NoSoulprint:
        return None


@pytest.fixture(scope="module")
async def people(runtime, db, service):
    """Alice (the sample, full pass included) and Bob (another export), each with a token of their own."""
    suffix = uuid.uuid4().hex[:8]
    alice, bob = f"mcp-alice-{suffix}", f"mcp-bob-{suffix}"
    for person, export in ((alice, SAMPLE), (bob, OTHER_EXPORT)):
        assert (await import_and_wait(runtime, person, export)).status == "complete"
        await wait_until(lambda: _current_view(service, person), lambda view: view is not None,
                         what=f"the query service's view of {person}")
    tokens = {person: (await db.tokens.create(person, "test_mcp"))[1] for person in (alice, bob)}
    return {"alice": alice, "bob": bob, "tokens": tokens}


@pytest.fixture(scope="module")
async def mcp_url(db, service):
    mount = build_mcp(service, Authenticator(db.tokens, OPERATOR))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with mount.lifespan():
            yield

    server = ApiServer(Starlette(routes=[Route("/mcp", mount.asgi)], lifespan=lifespan), bind("127.0.0.1", 0))
    url = await server.start()
    yield f"{url}/mcp"
    await server.stop()


@contextlib.asynccontextmanager
async def connected(url: str, headers: dict[str, str]):
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(120)) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client


def as_person(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def owners_of_chunks(db, chunk_ids) -> set[str]:
    rows = await db.pool.fetch("SELECT DISTINCT user_id FROM conversation_chunks WHERE chunk_id = ANY($1::uuid[])",
                               list(chunk_ids))
    return {r["user_id"] for r in rows}


async def conversations_of(db, user_id: str) -> set[str]:
    rows = await db.pool.fetch("SELECT DISTINCT conversation_id FROM conversation_chunks WHERE user_id = $1", user_id)
    return {r["conversation_id"] for r in rows}


# -- over streamable HTTP ---------------------------------------------------------------


async def test_the_tools_are_listed_with_typed_arguments_and_no_person_argument(mcp_url, people):
    async with connected(mcp_url, as_person(people["tokens"][people["alice"]])) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    assert all(tool.description for tool in tools.values())
    search = tools["search_memory"].input_schema
    assert {"query", "k", "tiers", "since", "until", "include_facts"} <= set(search["properties"])
    assert search["required"] == ["query"] and search["properties"]["k"]["type"] == "integer"
    assert tools["ask"].input_schema["required"] == ["question"]
    # Who is asked about comes from the token alone: no tool takes a person.
    assert not any({"user", "user_id"} & set(tool.input_schema.get("properties", {})) for tool in tools.values())


async def test_search_memory_returns_hits_with_their_conversations_and_messages(mcp_url, people, db):
    alice = people["alice"]
    async with connected(mcp_url, as_person(people["tokens"][alice])) as client:
        result = await client.call_tool("search_memory", {"query": "what is going on inside a sourdough starter",
                                                          "k": 5, "include_facts": True})
    assert not result.is_error, result.content
    body = result.structured_content
    assert json.loads(result.content[0].text) == body
    assert len(body["hits"]) == 5 and body["stats"]["fewer_than_k"] is False
    assert all(hit["conversation_id"] and hit["message_ids"] and hit["text"] for hit in body["hits"])
    assert await owners_of_chunks(db, [hit["chunk_id"] for hit in body["hits"]]) == {alice}
    assert "facts" in body


async def test_get_soulprint_returns_the_current_sections_and_memory(mcp_url, people):
    alice = people["alice"]
    async with connected(mcp_url, as_person(people["tokens"][alice])) as client:
        result = await client.call_tool("get_soulprint", {})
    assert not result.is_error, result.content
    view = result.structured_content
    assert view["user_id"] == alice and set(view["sections"]) == SECTIONS
    assert all(view["sections"].values()) and view["version"] in (1, 2) and view["made_at"]
    assert "memory" in view


async def test_list_memory_facts_gives_category_dates_and_sources(mcp_url, people, db):
    alice = people["alice"]
    async with connected(mcp_url, as_person(people["tokens"][alice])) as client:
        every = (await client.call_tool("list_memory_facts", {})).structured_content["facts"]
        about = await client.call_tool("list_memory_facts", {"query": "Dagster"})
    assert every, "the sample's full pass consolidates facts"
    conversations = await conversations_of(db, alice)
    for fact in every:
        assert fact["category"] and fact["text"] and "first_seen" in fact and "last_seen" in fact
        assert fact["sources"] and all(s["conversation_id"] in conversations and s["message_ids"]
                                       for s in fact["sources"])
    assert not about.is_error
    assert {f["fact_id"] for f in about.structured_content["facts"]} <= {f["fact_id"] for f in every}


async def test_ask_answers_with_sources(mcp_url, people, db):
    alice = people["alice"]
    async with connected(mcp_url, as_person(people["tokens"][alice])) as client:
        result = await client.call_tool("ask", {"question": "How do I keep my sourdough starter alive?"})
    assert not result.is_error, result.content
    answer = result.structured_content
    assert result.content[0].text == answer["response"] and answer["response"].strip()
    assert answer["method"] and answer["chunks_used"] > 0 and answer["sources"]
    assert {s["conversation_id"] for s in answer["sources"]} <= await conversations_of(db, alice)


async def test_tool_errors_are_one_line_results_not_crashes(mcp_url, people, db):
    nobody_token = (await db.tokens.create(f"mcp-nobody-{uuid.uuid4().hex[:8]}"))[1]
    async with connected(mcp_url, as_person(people["tokens"][people["alice"]])) as client:
        too_many = await client.call_tool("search_memory", {"query": "sourdough", "k": 500})
        not_a_number = await client.call_tool("search_memory", {"query": "sourdough", "k": "ten"})
        backwards = await client.call_tool("search_memory", {"query": "x", "since": "2025-01-02T00:00:00Z",
                                                             "until": "2025-01-01T00:00:00Z"})
        empty = await client.call_tool("ask", {"question": "   "})
    async with connected(mcp_url, as_person(nobody_token)) as client:
        no_soulprint = await client.call_tool("get_soulprint", {})
    for result, says in ((too_many, "k"), (not_a_number, "k"), (backwards, "since must be before until"),
                         (empty, "message"), (no_soulprint, "no soulprint")):
        assert result.is_error
        (block,) = result.content
        assert "\n" not in block.text and says in block.text, block.text


async def test_no_valid_token_is_refused_with_401_before_any_mcp(mcp_url, people, db):
    token_id, revoked = await db.tokens.create(people["alice"], "revoked")
    await db.tokens.revoke(token_id)
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                  "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                             "clientInfo": {"name": "test", "version": "0"}}}
    async with httpx2.AsyncClient() as http:
        for headers in ({}, as_person("sp_not-a-token"), as_person(revoked), {"Authorization": "Basic abc"}):
            response = await http.post(mcp_url, json=initialize,
                                       headers={"Accept": "application/json, text/event-stream", **headers})
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.json()["error"]["type"] == "authentication_error"
        # The operator must name the person; a person's token may not name another.
        for headers in (as_person(OPERATOR),
                        {**as_person(people["tokens"][people["bob"]]), USER_HEADER: people["alice"]}):
            response = await http.post(mcp_url, json=initialize,
                                       headers={"Accept": "application/json, text/event-stream", **headers})
            assert response.status_code == 403 and response.json()["error"]["message"]


async def test_a_persons_token_never_returns_another_persons_rows(mcp_url, people, db):
    alice, bob = people["alice"], people["bob"]
    rows = await db.pool.fetch("SELECT content FROM conversation_chunks WHERE user_id = $1", alice)
    words = sorted({w for r in rows for w in r["content"].split() if w.isalpha() and len(w) > 4})
    rng = random.Random(9)
    queries = [" ".join(rng.sample(words, rng.randint(1, 3))) for _ in range(12)]
    bobs_conversations = await conversations_of(db, bob)
    for headers, person in ((as_person(people["tokens"][bob]), bob),
                            ({**as_person(OPERATOR), USER_HEADER: bob}, bob),
                            (as_person(people["tokens"][alice]), alice)):
        async with connected(mcp_url, headers) as client:
            hits = []
            for text in queries:
                result = await client.call_tool("search_memory", {"query": text, "k": 20, "include_facts": True})
                assert not result.is_error, result.content
                hits += result.structured_content["hits"]
            facts = (await client.call_tool("list_memory_facts", {})).structured_content["facts"]
            view = (await client.call_tool("get_soulprint", {})).structured_content
            answer = (await client.call_tool("ask", {"question": queries[0]})).structured_content
        assert hits, "random words of Alice's history find something of everyone's"
        assert await owners_of_chunks(db, {h["chunk_id"] for h in hits}) == {person}
        assert view["user_id"] == person
        if person == bob:
            sources = {s["conversation_id"] for f in facts for s in f["sources"]}
            sources |= {s["conversation_id"] for s in answer["sources"]}
            assert {h["conversation_id"] for h in hits} | sources <= bobs_conversations


# -- over stdio: `soulprint mcp` -------------------------------------------------------------


def mcp_env(stack_settings, data_dir: Path, **extra) -> dict[str, str]:
    """The child's settings: the session stack's database, its embedder, nothing of this environment's."""
    return {"SOULPRINT_DATA_DIR": str(data_dir), "SOULPRINT_DATABASE_URL": stack_settings.database_url,
            "SOULPRINT_EMBEDDING_PROVIDER": stack_settings.embedding.provider, **extra}


def run_mcp(args, env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SOULPRINT_", "ANTHROPIC_"))}
    return subprocess.run([sys.executable, "-m", "soulprint.cli", "mcp", *args], env=clean | env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


async def test_soulprint_mcp_serves_the_tools_over_stdio_until_its_token_is_revoked(stack_settings, people, db,
                                                                                      tmp_path):
    alice = people["alice"]
    token_id, token = await db.tokens.create(alice, "stdio")
    server = StdioServerParameters(command=sys.executable, args=["-m", "soulprint.cli", "mcp", "--token", token],
                                   env=mcp_env(stack_settings, tmp_path / "data"))
    with open(tmp_path / "stderr.txt", "w+") as errlog:
        async with Client(stdio_client(server, errlog=errlog)) as client:  # every line of stdout is read as protocol
            tools = {tool.name for tool in (await client.list_tools()).tools}
            result = await client.call_tool("search_memory", {"query": "sourdough starter", "k": 5})
            await db.tokens.revoke(token_id)
            revoked = await client.call_tool("search_memory", {"query": "sourdough starter", "k": 5})
        errlog.seek(0)
        assert "Traceback" not in errlog.read()
    assert tools == TOOLS
    assert not result.is_error, result.content
    hits = result.structured_content["hits"]
    assert len(hits) == 5 and all(h["conversation_id"] and h["message_ids"] for h in hits)
    assert await owners_of_chunks(db, [h["chunk_id"] for h in hits]) == {alice}
    assert revoked.is_error and "the token is not valid" in revoked.content[0].text


async def test_soulprint_mcp_acts_for_the_operators_named_person_over_stdio(stack_settings, people, db, tmp_path):
    bob = people["bob"]
    server = StdioServerParameters(command=sys.executable, args=["-m", "soulprint.cli", "mcp", "--user", bob],
                                   env=mcp_env(stack_settings, tmp_path / "data", SOULPRINT_ADMIN_TOKEN=OPERATOR,
                                               SOULPRINT_TOKEN=OPERATOR))
    async with Client(server) as client:
        result = await client.call_tool("search_memory", {"query": "sourdough starter", "k": 5})
    hits = result.structured_content["hits"]
    assert hits and await owners_of_chunks(db, [h["chunk_id"] for h in hits]) == {bob}


@pytest.mark.parametrize("args, extra, says", [
    ([], {}, "soulprint mcp needs a token"),
    (["--token", "sp_unknown"], {}, "the token is not valid"),
    (["--token", OPERATOR], {"SOULPRINT_ADMIN_TOKEN": OPERATOR}, "must name the person to act for"),
])
def test_soulprint_mcp_refuses_in_one_line_with_nothing_on_stdout(stack_settings, tmp_path, args, extra, says):
    result = run_mcp(args, mcp_env(stack_settings, tmp_path / "data", **extra))
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("soulprint: error: ") and says in line, line


async def test_soulprint_mcp_refuses_a_person_token_naming_another(stack_settings, people, tmp_path):
    result = run_mcp(["--token", people["tokens"][people["bob"]], "--user", people["alice"]],
                     mcp_env(stack_settings, tmp_path / "data"))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == "soulprint: error: this token may only read its own person's data"
