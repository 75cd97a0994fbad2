"""Memory: consolidated → memory.

Write the curated MEMORY document (Preferences, Projects, Important Dates,
Beliefs & Values, Decisions & Context) from the consolidated facts, store it
with the job and the user, and publish it.
"""

from __future__ import annotations

from soulprint.agents.containment import contained
from soulprint.agents.flow import emit
from soulprint.domain.memory_doc import memory_from_result, memory_request
from soulprint.models.events import FactsConsolidated
from soulprint.models.jobs import FullPassStage


def register(rt) -> None:
    app, consolidated, _ = rt.source(FullPassStage.MEMORY)

    @app.agent(consolidated, name="soulprint.memory")
    async def memory(stream):
        async for event in stream:
            if isinstance(event, FactsConsolidated):
                await contained(rt, "memory", event, lambda: write_memory(rt, event))


async def write_memory(rt, event: FactsConsolidated) -> None:
    jobs = rt.db.jobs
    if not await jobs.advance_full_pass(event.job_id, FullPassStage.CONSOLIDATING, FullPassStage.MEMORY):
        return
    facts = await rt.db.facts.load_consolidated(event.job_id)
    result = await rt.llm.complete(memory_request(event.user_id, event.job_id, facts))
    if not result.ok:
        await jobs.fail_full_pass(event.job_id, f"memory: {result.error}")
        return
    memory_md = memory_from_result(result.data, offline=result.offline)
    await emit(rt, (await jobs.store_memory(event.job_id, event.user_id, memory_md, result.offline)).emit)
