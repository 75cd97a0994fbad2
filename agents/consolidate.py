"""Consolidation: facts → consolidated.

Fires once per run: the transition facts → consolidating succeeds only when
every extraction chunk of the job has its facts (counted in Postgres) and only
for one caller. Merges duplicates, resolves contradictions by time (pure
domain code), reduces with the LLM when the result is over budget, stores it.
"""

from __future__ import annotations

from soulprint.agents.containment import contained_full_pass
from soulprint.agents.flow import emit
from soulprint.domain.consolidation import consolidate, consolidated_tokens, reduce_until_fits
from soulprint.models.events import FactsExtracted
from soulprint.models.jobs import FullPassStage


def register(rt) -> None:
    app, extracted, _ = rt.source(FullPassStage.CONSOLIDATING)

    @app.agent(extracted, name="soulprint.consolidate")
    async def consolidation(stream):
        async for event in stream:
            if isinstance(event, FactsExtracted):
                await contained_full_pass(rt, "consolidation", event, lambda: consolidate_job(rt, event))


async def consolidate_job(rt, event: FactsExtracted) -> None:
    if not await rt.db.jobs.advance_full_pass(event.job_id, FullPassStage.FACTS, FullPassStage.CONSOLIDATING):
        return  # not all facts yet, another worker already started it, or every fact was dropped
    facts = consolidate(await rt.db.facts.load(event.job_id))
    budget = rt.settings.consolidation_budget_tokens
    if consolidated_tokens(facts) > budget:
        report = await reduce_until_fits(facts, rt.llm.complete, budget_tokens=budget, job_id=event.job_id)
        facts = report.facts
    await emit(rt, (await rt.db.jobs.store_consolidated(event.job_id, event.user_id, facts)).emit)
