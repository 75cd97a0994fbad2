"""Consolidation: facts → consolidated.

Fires once per run: the transition facts → consolidating succeeds only when
every extraction chunk of the job has its facts (counted in Postgres) and only
for one caller. Embeds the distinct statements with the runtime's embedder so
that facts saying the same thing in other words merge, merges duplicates and
resolves contradictions by time (pure domain code), reduces with the LLM when
the result is over budget, stores it.
"""

from __future__ import annotations

import logging
from typing import Sequence

from soulprint.agents.containment import contained
from soulprint.agents.flow import emit
from soulprint.domain.consolidation import (
    consolidate,
    consolidated_tokens,
    paraphrase_texts,
    paraphrase_threshold,
    reduce_until_fits,
)
from soulprint.models.events import FactsExtracted
from soulprint.models.facts import Fact
from soulprint.models.jobs import FullPassStage
from soulprint.services.embeddings import EmbeddingError

log = logging.getLogger(__name__)


def register(rt) -> None:
    app, extracted, _ = rt.source(FullPassStage.CONSOLIDATING)

    @app.agent(extracted, name="soulprint.consolidate")
    async def consolidation(stream):
        async for event in stream:
            if isinstance(event, FactsExtracted):
                await contained(rt, "consolidation", event, lambda: consolidate_job(rt, event))


async def statement_vectors(embedder, facts: Sequence[Fact]) -> tuple[dict[str, list[float]] | None, float | None]:
    """(vectors of the facts' distinct statements, the model's threshold), or (None, None).

    None when the model has no measured threshold (its cosines mean nothing
    yet) or the provider fails: the lexical rules then merge alone, and the
    log says so, rather than the full pass failing over a quality step.
    """
    space = embedder.space
    threshold = paraphrase_threshold(space.provider, space.model)
    if threshold is None:
        log.info("consolidation: no paraphrase threshold measured for %s: merging by wording only", space.space_id)
        return None, None
    texts = paraphrase_texts(facts)
    try:
        return dict(zip(texts, await embedder.embed_all(texts, "document"))), threshold
    except EmbeddingError as exc:
        log.warning("consolidation: embedding %d statements failed (%s): merging by wording only", len(texts), exc)
        return None, None


async def consolidate_job(rt, event: FactsExtracted) -> None:
    if not await rt.db.jobs.advance_full_pass(event.job_id, FullPassStage.FACTS, FullPassStage.CONSOLIDATING):
        return  # not all facts yet, another worker already started it, or every fact was dropped
    raw = await rt.db.facts.load(event.job_id)
    facts = consolidate(raw, *await statement_vectors(rt.embedder, raw))
    budget = rt.settings.consolidation_budget_tokens
    if consolidated_tokens(facts) > budget:
        report = await reduce_until_fits(facts, rt.llm.complete, budget_tokens=budget, job_id=event.job_id)
        facts = report.facts
    await emit(rt, (await rt.db.jobs.store_consolidated(event.job_id, event.user_id, facts)).emit)
