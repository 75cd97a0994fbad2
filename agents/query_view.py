"""The query service's view: `sections` and `memory` → query_soulprints.

A consumer group of its own (Lane.QUERY): the query service follows each
person's published soulprint versions and MEMORY at its own pace, behind no
pipeline stage. One agent reads both topics through one subscription, so the
two kinds of event meet one writer per partition; the view's upserts decide
order (services/db/query_view.py), so redelivery and replay are harmless. A
failed write goes to the dead letters and the loop goes on: the view is never
a job's reason to fail.
"""

from __future__ import annotations

from soulprint.agents.containment import contained
from soulprint.models.events import MemoryWritten, SectionsPublished
from soulprint.topics.stages import Lane


def register(rt) -> None:
    lane = rt.lanes[Lane.QUERY]
    sections, memory = lane.topics.sections, lane.topics.memory
    # No fixed value type: faust rebuilds each event from the namespace it carries.
    published = sections.derive(topics=[*sections.topics, *memory.topics], key_type=str, key_serializer="raw",
                                value_serializer="json")

    @lane.app.agent(published, name="soulprint.query_view")
    async def query_view(stream):
        async for event in stream:
            await contained(rt, "query_view", event, lambda: apply(rt.db.view, event))


async def apply(view, event) -> None:
    if isinstance(event, SectionsPublished):
        await view.apply_sections(event)
    elif isinstance(event, MemoryWritten):
        await view.apply_memory(event)
