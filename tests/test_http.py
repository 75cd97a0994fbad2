"""The HTTP API over real sockets: uvicorn on a free port in the test's loop, the session's runtime behind it.

Auth refusals, the error table, each endpoint's happy path after importing
the shipped sample, and the official `openai` client against /v1 (streamed
and not). Isolation with many people is in tests/test_http_isolation.py.
"""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import openai
import pytest

from soulprint.runtime import build_api, build_query_service
from soulprint.services.auth import Authenticator
from soulprint.services.embeddings.bedrock import BedrockTitanEmbedder
from soulprint.services.http.app import build_app
from soulprint.services.http.health import Health
from soulprint.services.http.mcp import build_mcp
from soulprint.services.http.server import ApiServer, ServerError, bind
from soulprint.services.query import QueryService
from support.pipeline import import_and_wait
from support.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-export.zip"
ADMIN = "operator-token-for-the-http-tests-0123456789"


async def serve(app) -> ApiServer:
    server = ApiServer(app, bind("127.0.0.1", 0))
    await server.start()
    return server


def api_for(rt, query: QueryService, admin: str | None = ADMIN):
    """The app as `soulprint serve` builds it (runtime.build_api), with an operator token of the test's."""
    auth = Authenticator(rt.db.tokens, admin)
    return build_app(query, auth, rt.settings.service, build_mcp(query, auth),
                     health=Health(rt.settings, rt.db, rt.embedder, query.llm))


@pytest.fixture(scope="module")
async def api(runtime):
    server = await serve(api_for(runtime, build_query_service(runtime)))
    yield server.url
    await server.stop()


@pytest.fixture(scope="module")
async def demo(runtime, api):
    """The shipped sample imported for one person, with that person's token, once its soulprint is served."""
    user = "http-demo"
    job = await import_and_wait(runtime, user, SAMPLE)
    assert job.status == "complete", job.error
    _, token = await runtime.db.tokens.create(user, "test_http")
    async with httpx.AsyncClient(base_url=api, headers=bearer(token), timeout=TIMEOUT) as client:
        await wait_until(lambda: client.get("/v1/soulprint"), lambda r: r.status_code == 200, limit_s=60,
                         what="the query service's view of the sample's soulprint")
    return user, token


# An answer on this 2-core machine, with the whole suite running beside it, may take seconds.
TIMEOUT = httpx.Timeout(60.0)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def error_of(response: httpx.Response) -> dict:
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}
    assert "Traceback" not in body["error"]["message"]
    return body["error"]


PROTECTED = [
    ("POST", "/v1/search", {"query": "dagster"}),
    ("POST", "/v1/query", {"message": "what did I decide?"}),
    ("GET", "/v1/soulprint", None),
    ("GET", "/v1/facts", None),
    ("POST", "/v1/chat/completions", {"model": "soulprint", "messages": [{"role": "user", "content": "hi"}]}),
    ("GET", "/v1/models", None),
    ("POST", "/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
]


# -- health, auth, errors -----------------------------------------------------------------

async def test_health_needs_no_token_and_names_the_providers(api, runtime):
    async with httpx.AsyncClient(base_url=api) as client:
        r = await client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "database": True, "broker": True,
                        "embedding": runtime.embedder.space.space_id, "llm": "offline", "offline": True}


async def test_every_route_but_health_refuses_a_missing_unknown_or_revoked_token(api, runtime):
    token_id, revoked = await runtime.db.tokens.create("http-revoked")
    assert await runtime.db.tokens.revoke(token_id)
    async with httpx.AsyncClient(base_url=api) as client:
        for method, path, body in PROTECTED:
            for headers in ({}, bearer("not-a-token"), bearer(revoked), {"Authorization": "Basic dXNlcjpwYXNz"}):
                r = await client.request(method, path, json=body, headers=headers)
                assert r.status_code == 401, (path, headers, r.text)
                assert r.headers["www-authenticate"].startswith("Bearer")
                assert error_of(r)["type"] == "authentication_error"


async def test_errors_are_json_with_the_status_of_the_table(api, runtime):
    _, token = await runtime.db.tokens.create("http-nobody")  # a person with no import at all
    limit = runtime.settings.service.max_request_bytes
    async with httpx.AsyncClient(base_url=api, headers=bearer(token), timeout=TIMEOUT) as client:
        cases = {
            "malformed JSON": (await client.post("/v1/search", content=b"{not json"), 400),
            "empty body": (await client.post("/v1/query", content=b""), 400),
            "no user message": (await client.post("/v1/chat/completions", json={
                "model": "m", "messages": [{"role": "system", "content": "be brief"}]}), 400),
            "k out of bounds": (await client.post("/v1/search", json={"query": "x", "k": 0}), 422),
            "unknown field": (await client.post("/v1/search", json={"query": "x", "filter": "typo"}), 422),
            "not an object": (await client.post("/v1/query", json=["a question"]), 422),
            "facts k": (await client.get("/v1/facts", params={"k": "many"}), 422),
            "no soulprint": (await client.get("/v1/soulprint"), 404),
            "no soulprint to answer from": (await client.post("/v1/query", json={"message": "who am I?"}), 404),
            "unknown route": (await client.get("/v1/nothing-here"), 404),
            "wrong method": (await client.get("/v1/search"), 405),
            "too large, declared": (await client.post("/v1/search", content=b" " * (limit + 1)), 413),
            # Chunked, with no Content-Length: the bound holds while the body is read.
            "too large, streamed": (await client.post("/v1/search", content=_chunks(limit + 1)), 413),
        }
    for case, (response, status) in cases.items():
        assert response.status_code == status, (case, response.text)
        assert error_of(response)["message"], case
    assert error_of(cases["k out of bounds"][0])["message"].startswith("k: ")
    assert error_of(cases["unknown field"][0])["type"] == "invalid_request_error"


async def _chunks(total: int, size: int = 64 * 1024):
    while total > 0:
        yield b" " * min(size, total)
        total -= size


async def test_a_provider_that_fails_is_503_saying_which(runtime, demo):
    user, token = demo
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    broken = BedrockTitanEmbedder(endpoint_url=f"http://127.0.0.1:{closed}", max_attempts=1,
                                  aws_access_key_id="x", aws_secret_access_key="x")
    server = await serve(api_for(runtime, QueryService(runtime.db, broken, runtime.llm, runtime.settings.service)))
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=bearer(token)) as client:
            r = await client.post("/v1/search", json={"query": "dagster"})
    finally:
        await server.stop()
        await broken.close()
    assert r.status_code == 503
    assert "embedding provider" in error_of(r)["message"]


async def test_a_port_in_use_is_one_clear_error(api):
    port = int(api.rsplit(":", 1)[1])
    with pytest.raises(ServerError, match=rf"^cannot listen on 127\.0\.0\.1:{port}: Address already in use$"):
        bind("127.0.0.1", port)


# -- the endpoints --------------------------------------------------------------------------

async def test_search_returns_the_persons_hits_with_their_sources(api, demo):
    _, token = demo
    async with httpx.AsyncClient(base_url=api, headers=bearer(token), timeout=TIMEOUT) as client:
        r = await client.post("/v1/search", json={"query": "Dagster pipeline", "k": 5, "include_facts": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"hits", "facts", "stats"}
    assert 0 < len(body["hits"]) <= 5
    for hit in body["hits"]:
        assert hit["conversation_id"] and hit["message_ids"] and hit["text"]
        assert {"chunk_id", "title", "tier", "message_at", "score", "tokens"} <= set(hit)
    assert body["facts"], "the sample's facts mention Dagster"


async def test_query_answers_with_sources(api, demo):
    _, token = demo
    async with httpx.AsyncClient(base_url=api, headers=bearer(token), timeout=TIMEOUT) as client:
        r = await client.post("/v1/query", json={
            "message": "What did I decide about the pipeline?",
            "history": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["response"] and body["method"] == "offline-extractive"
    assert body["chunks_used"] > 0 and body["sources"]
    assert all(s["conversation_id"] and s["message_ids"] for s in body["sources"])


async def test_soulprint_and_facts(api, demo):
    user, token = demo
    async with httpx.AsyncClient(base_url=api, headers=bearer(token), timeout=TIMEOUT) as client:
        soulprint = (await client.get("/v1/soulprint")).json()
        everything = await client.get("/v1/facts")
        matching = await client.get("/v1/facts", params={"q": "Dagster", "k": 3})
    assert soulprint["user_id"] == user
    assert {"SOUL", "IDENTITY", "USER", "AGENTS", "TOOLS"} <= set(soulprint["sections"])
    assert everything.status_code == matching.status_code == 200
    assert everything.json()["facts"] and 0 < len(matching.json()["facts"]) <= 3
    assert all(f["sources"] for f in everything.json()["facts"])


async def test_the_operator_acts_for_the_person_it_names_and_must_name_one(api, demo):
    user, _ = demo
    async with httpx.AsyncClient(base_url=api, headers=bearer(ADMIN), timeout=TIMEOUT) as client:
        named = await client.post("/v1/search", json={"query": "Dagster", "user": user})
        soulprint = await client.get("/v1/soulprint", params={"user": user})
        chat = await client.post("/v1/chat/completions", json={
            "model": "soulprint", "user": user, "messages": [{"role": "user", "content": "What is Dagster to me?"}]})
        unnamed = [await client.post("/v1/search", json={"query": "Dagster"}), await client.get("/v1/soulprint"),
                   await client.post("/v1/chat/completions", json={
                       "model": "soulprint", "messages": [{"role": "user", "content": "hi"}]})]
    assert named.status_code == 200 and named.json()["hits"]
    assert soulprint.status_code == 200 and soulprint.json()["user_id"] == user
    assert chat.status_code == 200 and chat.json()["soulprint"]["sources"]
    for r in unnamed:
        assert r.status_code == 403 and error_of(r)["type"] == "permission_error"


async def test_a_persons_token_naming_someone_else_is_403(api, demo):
    _, token = demo
    async with httpx.AsyncClient(base_url=api, headers=bearer(token), timeout=TIMEOUT) as client:
        refused = [await client.post("/v1/search", json={"query": "Dagster", "user": "someone-else"}),
                   await client.post("/v1/query", json={"message": "hi", "user": "someone-else"}),
                   await client.get("/v1/soulprint", params={"user": "someone-else"}),
                   await client.get("/v1/facts", params={"user": "someone-else"})]
        # OpenAI's `user` is a client's own end-user label: with a person's token it names nobody.
        chat = await client.post("/v1/chat/completions", json={
            "model": "soulprint", "user": "someone-else", "messages": [{"role": "user", "content": "Dagster?"}]})
    for r in refused:
        assert r.status_code == 403 and error_of(r)["type"] == "permission_error"
    assert chat.status_code == 200


# -- OpenAI compatibility ---------------------------------------------------------------------

async def test_the_openai_client_gets_a_streamed_and_a_whole_answer(api, demo):
    _, token = demo
    client = openai.AsyncOpenAI(base_url=api + "/v1", api_key=token, max_retries=0)
    messages = [{"role": "system", "content": "You are my assistant."},
                {"role": "user", "content": "Which orchestrator did we talk about?"},
                {"role": "assistant", "content": "Several."},
                {"role": "user", "content": "What did I decide about moving the pipeline?"}]
    try:
        assert [m.id for m in (await client.models.list()).data] == ["soulprint"]
        whole = await client.chat.completions.create(model="soulprint", messages=messages)
        stream = await client.chat.completions.create(model="soulprint", messages=messages, stream=True,
                                                      stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
    finally:
        await client.close()
    answer = whole.choices[0].message
    assert answer.role == "assistant" and answer.content
    assert whole.choices[0].finish_reason == "stop" and whole.object == "chat.completion"
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    assert whole.soulprint["sources"] and whole.soulprint["method"] == "offline-extractive"

    assert len(chunks) > 3 and all(c.object == "chat.completion.chunk" for c in chunks)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == answer.content  # the same question, the same (offline) answer
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(final) == 1 and final[0].soulprint["sources"] == whole.soulprint["sources"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


async def test_a_stream_is_server_sent_events_ending_in_done(api, demo):
    _, token = demo
    async with httpx.AsyncClient(base_url=api, headers=bearer(token), timeout=TIMEOUT) as client:
        async with client.stream("POST", "/v1/chat/completions", json={
                "model": "any-name", "stream": True, "messages": [{"role": "user", "content": "Dagster?"}]}) as r:
            lines = [line async for line in r.aiter_lines() if line]
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    assert '"model":"any-name"' in lines[0]


async def test_openai_errors_carry_the_message(api, runtime):
    client = openai.AsyncOpenAI(base_url=api + "/v1", api_key="not-a-token", max_retries=0)
    try:
        with pytest.raises(openai.AuthenticationError, match="unknown or revoked"):
            await client.chat.completions.create(model="soulprint", messages=[{"role": "user", "content": "hi"}])
    finally:
        await client.close()


async def test_the_runtime_builds_the_same_app(runtime):
    """runtime.build_api (what `soulprint serve` runs) serves with the runtime's own authenticator."""
    server = await serve(build_api(runtime, build_query_service(runtime)))
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/health")).json()["status"] == "ok"
            assert (await client.get("/v1/models")).status_code == 401
    finally:
        await server.stop()
