"""Quick pass: quick → sections (version 1).

Receive the sample ingest kept, ask the LLM for the five sections (one call,
or two in parallel for a large sample), store them as version 1 and publish
them: the job is quick_ready and chat can start. A failure here fails only the
quick pass; chunking and the full pass do not depend on it.
"""

from __future__ import annotations

import asyncio
import logging

from soulprint.agents.flow import emit
from soulprint.domain.soulprint import quick_requests, rendered_sections
from soulprint.models.events import QuickPassRequested, SectionsPublished
from soulprint.models.jobs import QuickStatus
from soulprint.models.sections import Sections
from soulprint.models.text import one_line

log = logging.getLogger("soulprint.agents.quick")


def register(rt) -> None:
    # concurrency: one person's slow LLM answer must not hold up the next
    # person's quick pass. Losing an offset to faust #606 here costs nothing
    # durable: the status table shows the quick pass still pending/running.
    app, requests, _ = rt.source(QuickStatus.RUNNING)

    @app.agent(requests, name="soulprint.quick", concurrency=rt.settings.quick_concurrency)
    async def quick(stream):
        async for event in stream:
            try:
                await quick_pass(rt, event)
            except Exception as exc:  # noqa: BLE001 - never escape the agent loop (#315)
                log.exception("quick pass failed for job %s", getattr(event, "job_id", "?"))
                await rt.db.jobs.quick_failed(event.job_id, f"quick pass failed: {one_line(exc)}")


async def quick_pass(rt, event: QuickPassRequested) -> None:
    jobs = rt.db.jobs
    if not await jobs.claim_quick(event.job_id, rt.settings.stale_claim_s):
        return
    requests = quick_requests(event.user_id, event.job_id, list(event.samples), dict(event.profile))
    results = await asyncio.gather(*(rt.quick_llm.complete(r) for r in requests))
    failed = [r for r in results if not r.ok]
    if failed:
        await jobs.quick_failed(event.job_id, f"quick pass: {failed[0].error}")
        return
    sections = Sections.from_result(results[0])
    for extra in results[1:]:
        sections = sections.merge(Sections.from_result(extra))
    text, rendered = sections.soulprint_text(), rendered_sections(sections)
    # Not stored for a job that failed meanwhile, nor over a newer import's soulprint.
    current = await rt.db.soulprints.store(
        user_id=event.user_id, job_id=event.job_id, version=1, sections=sections.to_dict(),
        rendered=rendered, soulprint_text=text, memory_md=None, offline=sections.offline,
        made_by=list(zip(requests, results)),
    )
    await jobs.quick_ready(event.job_id)
    if current:
        await emit(rt, [SectionsPublished(job_id=event.job_id, user_id=event.user_id, version=1,
                                          offline=sections.offline, soulprint_text=text, sections=rendered)],
                   rt.lane(QuickStatus.RUNNING).topics)
