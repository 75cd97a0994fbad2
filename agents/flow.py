"""Moving a job on: send what the state machine says, where the stage table says.

Agents never call each other. A transition in services/db/jobs.py returns
the events that follow it; ``emit`` sends each on the topic topics/stages.py
names for it, with that topic's key.
"""

from __future__ import annotations

from typing import Iterable

from soulprint.topics.stages import route


async def emit(rt, events: Iterable, topics=None) -> None:
    """Send ``events`` in order, through ``topics`` (the app's own by default)."""
    topics = topics or rt.topics
    for event in events:
        spec, key = route(event)
        await getattr(topics, spec.name).send(key=key, value=event)


async def complete_if_chunked(rt, job_id: str) -> None:
    """Close the job if every conversation has its chunks; the winner starts the full pass and
    fixes the embedding's total."""
    s = rt.settings
    moved = await rt.db.jobs.complete_chunking(
        job_id, recent_days=s.recent_days, min_full_pass_conversations=s.min_full_pass_conversations,
        extraction_max_attempts=s.extraction_max_attempts,
    )
    if moved.job is not None:  # complete now: the embedding's total is known
        await rt.db.jobs.start_embedding(job_id, s.embedding.tiers, rt.embedder.space)
    await emit(rt, moved.emit)
