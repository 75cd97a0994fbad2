"""Embedding: chunks → vectors in chunk_embeddings.

A consumer group of its own on `chunks` (Lane.EMBED), beside the facts
agent's: embedding never waits behind fact extraction, and yields to a parse
in this process like the other background stages, so it never delays
quick_ready. Take a batch of chunk events with a time bound; for each
conversation, derive the ids of its chunks of the embedded tiers from its
per-tier counts (chunk ids are uuid5(user, conversation, tier, index)), load
those still without a vector of the current space by key, embed them as
documents and store them (idempotent, counted under the job lock). A chunk
event carries only medium refs, so the ids come from the counts, not from it.

A provider that refuses (EmbeddingError) fails the job's embedding with its
reason; the import and the soulprint stay. Anything else is logged and the
reconciler re-drives what is still unembedded.
"""

from __future__ import annotations

import logging

from soulprint.agents.containment import batch_counted
from soulprint.domain.chunking import chunk_id
from soulprint.models.events import ConversationChunked
from soulprint.models.jobs import EmbeddingStatus
from soulprint.services.embeddings import EmbeddingError

log = logging.getLogger("soulprint.agents.embed")

PAGE = 1024  # chunk ids loaded, embedded and stored at once (a large conversation has 100k+)


def register(rt) -> None:
    s = rt.settings.embedding
    app, chunks, _ = rt.source(EmbeddingStatus.PROCESSING)

    @app.agent(chunks, name="soulprint.embed")
    async def embed(stream):
        async for batch in stream.take(s.batch_size, within=rt.settings.batch_window_s):
            await rt.parsing.wait_idle()  # the parse (and so quick_ready) goes first here
            try:
                async with batch_counted("embed", batch):
                    await embed_batch(rt, batch)
            except Exception:  # noqa: BLE001 - never escape the loop (#315); the reconciler re-drives
                log.exception("embedding batch failed; its chunks will be re-driven")


async def embed_batch(rt, events: list) -> None:
    by_job: dict[str, tuple[str, set[str]]] = {}
    for e in events:
        if isinstance(e, ConversationChunked):
            by_job.setdefault(e.job_id, (e.user_id, set()))[1].add(e.conversation_id)
    for job_id, (user_id, conversations) in by_job.items():
        try:
            await embed_job(rt, job_id, user_id, sorted(conversations))
        except EmbeddingError as exc:
            log.warning("embedding of job %s failed: %s", job_id, exc)
            await rt.db.jobs.fail_embedding(job_id, str(exc))


async def embed_job(rt, job_id: str, user_id: str, conversation_ids: list[str]) -> None:
    tiers = rt.settings.embedding.tiers
    if not tiers:
        return
    counts = await rt.db.embeddings.tier_counts(job_id, conversation_ids)
    ids = [chunk_id(user_id, conversation, tier, i)
           for conversation, per_tier in counts.items() for tier in tiers for i in range(per_tier[tier])]
    embedder = rt.embedder
    for start in range(0, len(ids), PAGE):
        chunks = await rt.db.embeddings.to_embed(job_id, ids[start:start + PAGE], embedder.space.space_id)
        if not chunks:
            continue
        vectors = await embedder.embed_all([c.text for c in chunks], "document")
        if await rt.db.jobs.record_embeddings(job_id, embedder.space, [c.chunk_id for c in chunks], vectors) is None:
            return  # the job failed, was retired, or its embedding ended
