"""Sections v2: memory → sections.

Rewrite the five sections from MEMORY plus the sample of the person's richest
conversations, then swap them in whole (sections, soulprint_text with MEMORY
appended, version 2) in one transaction, and publish them. A failure leaves
version 1 in place and the reason on the job.
"""

from __future__ import annotations

from soulprint.agents.containment import contained
from soulprint.agents.flow import emit
from soulprint.domain.memory_doc import sections_v2_from_result, sections_v2_request
from soulprint.domain.sampling import SampledConversation
from soulprint.domain.soulprint import rendered_sections
from soulprint.models.events import MemoryWritten, SectionsPublished
from soulprint.models.jobs import FullPassStage


def register(rt) -> None:
    app, memories, _ = rt.source(FullPassStage.SECTIONS)

    @app.agent(memories, name="soulprint.sections")
    async def sections_v2(stream):
        async for event in stream:
            if isinstance(event, MemoryWritten):
                await contained(rt, "sections", event, lambda: rewrite_sections(rt, event))


async def rewrite_sections(rt, event: MemoryWritten) -> None:
    jobs = rt.db.jobs
    if not await jobs.advance_full_pass(event.job_id, FullPassStage.MEMORY, FullPassStage.SECTIONS):
        return
    job = await jobs.get(event.job_id)
    memory = await rt.db.soulprints.get_memory(event.job_id)
    memory_md = memory["memory_md"] if memory else event.memory_md
    samples = [SampledConversation(**s) for s in (job.sample or [])]
    request = sections_v2_request(event.user_id, event.job_id, memory_md, samples, job.profile or {})
    result = await rt.llm.complete(request)
    if not result.ok:
        await jobs.fail_full_pass(event.job_id, f"sections v2: {result.error}")
        return
    sections = sections_v2_from_result(result, memory_md)  # never repeating MEMORY or itself
    text, rendered = sections.soulprint_text(memory_md), rendered_sections(sections)
    # Not stored over a newer import's soulprint: the latest import wins.
    current = await rt.db.soulprints.store(
        user_id=event.user_id, job_id=event.job_id, version=2, sections=sections.to_dict(),
        rendered=rendered, soulprint_text=text, memory_md=memory_md, offline=sections.offline,
        made_by=[(request, result)],
    )
    await jobs.complete_full_pass(event.job_id)
    if current:
        await emit(rt, [SectionsPublished(job_id=event.job_id, user_id=event.user_id, version=2,
                                          offline=sections.offline, soulprint_text=text, sections=rendered)])
