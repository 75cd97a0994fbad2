"""The query service on the session stack: search and ask over an imported sample, offline and through
the real Anthropic SDK against the fake server; a provider that fails is Unavailable in one line; and
`soulprint ask` in a child process on the same database."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path

import pytest

from soulprint.domain.answering import OFFLINE_NOTICE
from soulprint.models.query import NoSoulprint, SearchRequest, Turn, Unavailable
from soulprint.services.embeddings import BedrockTitanEmbedder
from soulprint.services.llm.anthropic_provider import AnthropicClient
from soulprint.services.llm.offline_provider import OfflineClient
from soulprint.services.query import QueryService
from soulprint.settings import ServiceConfig
from support.fake_anthropic import FakeAnthropicServer
from support.fake_bedrock_embeddings import FakeBedrockEmbeddings
from support.fixtures_llm import fast_config, fresh_limiter
from support.pipeline import import_and_wait
from support.waiting import wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-export.zip"
QUESTION = "What is going on inside my sourdough starter?"


async def _view(db, user_id: str):
    async with db.reader.session(user_id) as conn:
        return await db.view.get(conn, user_id)


@pytest.fixture(scope="module")
async def person(runtime, db):
    """The shipped sample imported for one person, once the query service's view holds its last soulprint."""
    user_id = f"ask-{uuid.uuid4().hex[:10]}"
    job = await import_and_wait(runtime, user_id, SAMPLE)
    assert job.status == "complete" and job.embedding_status == "complete"
    final = 2 if job.full_pass_status == "complete" else 1
    await wait_until(lambda: _view(db, user_id), lambda v: v is not None and v.job_id == job.job_id
                     and v.version == final, what=f"the query view of {user_id}")
    return user_id


@pytest.fixture
def offline_service(runtime, db):
    return QueryService(db, runtime.embedder, OfflineClient(), ServiceConfig())


async def _owned(db, user_id: str, chunk_ids: list[str]) -> set[tuple[str, str]]:
    """(conversation, chunk) of these chunks that belong to ``user_id``."""
    rows = await db.pool.fetch("SELECT conversation_id, chunk_id::text AS chunk_id FROM conversation_chunks"
                               " WHERE user_id = $1 AND chunk_id = ANY($2::uuid[])", user_id, chunk_ids)
    return {(r["conversation_id"], r["chunk_id"]) for r in rows}


async def test_search_returns_hits_with_their_conversations_messages_and_facts(person, offline_service, db):
    out = await offline_service.search(person, SearchRequest(query="sourdough starter", k=5, include_facts=True))
    assert set(out) == {"hits", "facts", "stats"}
    hits = out["hits"]
    assert len(hits) == 5 and out["stats"]["fewer_than_k"] is False
    assert all(h["conversation_id"] and h["message_ids"] and h["title"] is not None for h in hits)
    assert await _owned(db, person, [h["chunk_id"] for h in hits]) == {(h["conversation_id"], h["chunk_id"])
                                                                       for h in hits}
    assert all(f["sources"] and all(s["conversation_id"] for s in f["sources"]) for f in out["facts"])
    plain = await offline_service.search(person, SearchRequest(query="sourdough starter", k=5))
    assert plain["facts"] == [] and [h["chunk_id"] for h in plain["hits"]] == [h["chunk_id"] for h in hits]


async def test_the_offline_answer_cites_passages_of_the_persons_history(person, offline_service, db):
    answer = await offline_service.ask(person, QUESTION)
    assert answer.method == "offline-extractive" and answer.response.startswith(OFFLINE_NOTICE)
    assert 0 < len(answer.sources) <= answer.chunks_used <= ServiceConfig().answer_hits
    assert "sourdough" in answer.response.lower() or "starter" in answer.response.lower()
    owned = await _owned(db, person, [s["chunk_id"] for s in answer.sources])
    assert owned == {(s["conversation_id"], s["chunk_id"]) for s in answer.sources}
    assert all(s["message_ids"] and s["excerpt"] and s["n"] >= 1 for s in answer.sources)
    body = answer.to_json()
    assert set(body) == {"response", "sources", "chunks_used", "method", "latency_ms", "usage"}
    assert body["latency_ms"] > 0
    follow_up = await offline_service.ask(person, "how often should I feed the starter?",
                                          [Turn(role="user", content=QUESTION), Turn(role="assistant",
                                                                                      content=answer.response)])
    assert follow_up.sources


async def test_a_person_without_a_soulprint_gets_no_soulprint(offline_service):
    with pytest.raises(NoSoulprint, match="no soulprint"):
        await offline_service.ask("nobody-at-all", QUESTION)
    with pytest.raises(NoSoulprint):
        await offline_service.soulprint("nobody-at-all")
    empty = await offline_service.search("nobody-at-all", SearchRequest(query="sourdough"))
    assert empty["hits"] == [] and empty["stats"]["fewer_than_k"] is True


async def test_soulprint_and_facts_read_the_persons_own(person, offline_service):
    view = await offline_service.soulprint(person)
    assert view.user_id == person and set(view.sections) == {"SOUL", "IDENTITY", "USER", "AGENTS", "TOOLS"}
    facts = await offline_service.facts(person)
    assert facts and all(f["sources"] for f in facts)


async def test_through_the_anthropic_sdk_the_answer_cites_sources_and_the_prefix_is_cached(person, runtime, db):
    async with FakeAnthropicServer(seed=5) as server:
        config = fast_config(server.url)
        client = AnthropicClient(config, limiter=fresh_limiter())
        try:
            service = QueryService(db, runtime.embedder, client, ServiceConfig())
            first = await service.ask(person, QUESTION)
            second = await service.ask(person, "Which orchestrator did I pick for the pipeline?")
        finally:
            await client.aclose()
        assert server.stats()["requests"] >= 2
    for answer in (first, second):
        assert answer.method == f"llm:{config.chat_model}"
        assert answer.sources and all(1 <= s["n"] <= answer.chunks_used for s in answer.sources)
        assert await _owned(db, person, [s["chunk_id"] for s in answer.sources])
    # the same soulprint prefix: written by the first question, read by the second
    assert first.usage["cache_creation_input_tokens"] > 0
    assert second.usage["cache_read_input_tokens"] == first.usage["cache_creation_input_tokens"]


async def test_a_failing_llm_is_unavailable_in_one_line(person, runtime, db):
    async with FakeAnthropicServer(seed=5, error_rate_500=1.0) as server:
        client = AnthropicClient(fast_config(server.url, max_attempts=1), limiter=fresh_limiter())
        try:
            with pytest.raises(Unavailable, match=r"^the answer provider \(anthropic\) failed") as err:
                await QueryService(db, runtime.embedder, client, ServiceConfig()).ask(person, QUESTION)
        finally:
            await client.aclose()
    assert "\n" not in str(err.value)


async def test_a_failing_embedder_is_unavailable_in_one_line(person, db):
    async with FakeBedrockEmbeddings() as bedrock:
        bedrock.throttle(10)
        embedder = BedrockTitanEmbedder(endpoint_url=bedrock.url, region="us-east-1", max_attempts=1,
                                        aws_access_key_id="x", aws_secret_access_key="y")
        service = QueryService(db, embedder, OfflineClient(), ServiceConfig())
        try:
            for call in (service.ask(person, QUESTION), service.search(person, SearchRequest(query="sourdough"))):
                with pytest.raises(Unavailable, match="^the embedding provider failed") as err:
                    await call
                assert "\n" not in str(err.value)
        finally:
            await embedder.close()


# -- `soulprint ask`, a child process on the session's database ----------------------------

async def _ask_cli(stack_settings, tmp_path, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOULPRINT_")}
    env.update(SOULPRINT_DATA_DIR=str(tmp_path), SOULPRINT_DATABASE_URL=stack_settings.database_url,
               SOULPRINT_EMBEDDING_PROVIDER="hash")  # the session's embedding space
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "soulprint.cli", "ask", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 300)  # a guard against a hang, not a timing
    return proc.returncode, out.decode(), err.decode()


async def test_soulprint_ask_prints_the_query_json_or_the_answer_with_its_sources(person, stack_settings, tmp_path):
    code, out, err = await _ask_cli(stack_settings, tmp_path, person, QUESTION, "--json")
    assert code == 0, err
    body = json.loads(out)  # the whole of stdout is one JSON document: the /v1/query body
    assert set(body) == {"response", "sources", "chunks_used", "method", "latency_ms", "usage"}
    assert body["method"] == "offline-extractive" and body["sources"]
    assert all(s["conversation_id"] and s["message_ids"] for s in body["sources"])
    code, out, err = await _ask_cli(stack_settings, tmp_path, person, QUESTION)
    assert code == 0, err
    assert out.startswith(OFFLINE_NOTICE) and "\nSources:\n[" in out
    assert body["sources"][0]["title"] in out and "offline-extractive" in err


@pytest.mark.parametrize("user, question, says", [
    ("nobody-at-all", QUESTION, "nobody-at-all has no soulprint yet"),
    ("someone", "   ", "the question: String should have at least 1 character"),
])
async def test_soulprint_ask_refuses_in_one_line(stack_settings, tmp_path, user, question, says):
    code, out, err = await _ask_cli(stack_settings, tmp_path, user, question)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("soulprint: error: ") and says in lines[0]
