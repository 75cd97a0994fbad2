"""The query service: search a person's history, read their soulprint and facts, answer as their assistant.

HTTP, MCP and the CLI all call this one object with a person already decided
(the token's, models/access.py), so isolation is checked in one place above
the database: every read runs inside ``db.reader.session(user_id)``, a
read-only transaction as the non-owner role whose row-level security shows
that person's rows only. A bug in the service therefore still reads nothing
of anyone else. Slow provider calls (the embedding of the question, the LLM)
run outside any transaction, so a connection is never held across them.

A provider that fails is :class:`Unavailable` with one line saying which;
a person without a complete import is :class:`NoSoulprint`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

from soulprint.domain.answering import cited_sources, recent_turns, select_passages
from soulprint.domain.prompts.answer import answer_request
from soulprint.models.llm import LLMResult
from soulprint.models.query import Answer, NoSoulprint, SearchRequest, Turn, Unavailable
from soulprint.models.text import one_line
from soulprint.services.db.search import Filters
from soulprint.services.embeddings import Embedder, EmbeddingError
from soulprint.services.llm.base import LLMClient

if TYPE_CHECKING:  # annotations only: the service is handed its settings, it does not read them
    from soulprint.models.view import SoulprintView
    from soulprint.settings import ServiceConfig

# Answers search micro chunks widened with their neighbouring messages: a
# focused hit plus its context, where a medium chunk (~2,000 tokens) would
# spend most of the budget on one moment. Micro is also the tier embedded by
# default, so both retrievers rank it.
ANSWER_TIERS = ("micro",)
OFFLINE_METHOD = "offline-extractive"


class QueryService:
    def __init__(self, db: Any, embedder: Embedder, llm: LLMClient, config: "ServiceConfig") -> None:
        self.db = db
        self.embedder = embedder
        self.llm = llm
        self.config = config

    async def _embed_query(self, text: str) -> list[float]:
        try:
            return (await self.embedder.embed([text], "query"))[0]
        except EmbeddingError as exc:
            raise Unavailable(one_line(f"the embedding provider failed: {exc}", 300)) from exc

    async def search(self, user_id: str, req: SearchRequest) -> dict[str, Any]:
        """``{hits, facts, stats}``: the fused hits with their sources and ranks, the matching facts
        when asked for, and how many candidates each retriever produced."""
        vector = await self._embed_query(req.query)
        filters = Filters(tiers=req.tiers, since=req.since, until=req.until, conversation_ids=req.conversation_ids)
        async with self.db.reader.session(user_id) as conn:
            result, _ = await self.db.search.search(conn, user_id, req.query, vector, self.embedder.space, req.k,
                                                    filters, expand_tokens=req.expand_tokens,
                                                    spare=self.db.reader.spare(user_id))
            facts = await self.db.search.facts(conn, user_id, req.query, req.k) if req.include_facts else []
        body = result.to_json()
        return {"hits": body["hits"], "facts": [f.to_json() for f in facts], "stats": body["stats"]}

    async def soulprint(self, user_id: str) -> "SoulprintView":
        async with self.db.reader.session(user_id) as conn:
            view = await self.db.view.get(conn, user_id)
        if view is None:
            raise NoSoulprint(f"{user_id} has no soulprint yet (no import of theirs has completed)")
        return view

    async def facts(self, user_id: str, query: str | None = None, k: int = 50) -> list[dict[str, Any]]:
        """The person's consolidated facts with their sources: all of them (by category) or those
        matching ``query``."""
        async with self.db.reader.session(user_id) as conn:
            return [f.to_json() for f in await self.db.search.facts(conn, user_id, query, k)]

    async def ask(self, user_id: str, message: str, history: Sequence[Turn] = ()) -> Answer:
        """The person's assistant answers ``message``, after ``history`` (oldest first), from their
        soulprint and the passages of their history that match it; the answer cites its sources."""
        started = time.perf_counter()
        vector = await self._embed_query(message)
        budget = self.config.answer_context_tokens
        async with self.db.reader.session(user_id) as conn:
            view = await self.db.view.get(conn, user_id)
            if view is None:
                raise NoSoulprint(f"{user_id} has no soulprint yet (no import of theirs has completed)")
            result, _ = await self.db.search.search(conn, user_id, message, vector, self.embedder.space,
                                                    self.config.answer_hits, Filters(tiers=ANSWER_TIERS),
                                                    expand_tokens=budget, spare=self.db.reader.spare(user_id))
        passages = select_passages(result.hits, budget)
        request = answer_request(view.sections, view.memory_md, passages, recent_turns(history), message)
        request.user_id = user_id  # the cached answer is made of this person's data (erasure finds it)
        reply = await self.llm.complete(request)
        if not reply.ok or reply.answer is None:
            raise Unavailable(one_line(f"the answer provider ({reply.provider or 'llm'}) failed: {reply.error}", 300))
        return Answer(response=reply.answer.answer, sources=cited_sources(passages, reply.answer.citations),
                      chunks_used=len(passages), method=_method(reply),
                      latency_ms=(time.perf_counter() - started) * 1000, usage=reply.usage.to_dict())


def _method(reply: LLMResult) -> str:
    return OFFLINE_METHOD if reply.offline else f"llm:{reply.model}"
