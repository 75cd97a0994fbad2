"""Sections v2: memory → sections.

Rewrite the five sections from MEMORY plus the sample of the person's richest
conversations, then swap them in whole (sections, soulprint_text with MEMORY
appended, version 2) in one transaction, and publish them. A failure leaves
version 1 in place and the reason on the job.
"""

from __future__ import annotations

from soulprint.agents.containment import contained_full_pass
from soulprint.domain.memory_doc import sections_v2_request
from soulprint.domain.sampling import SampledConversation
from soulprint.domain.soulprint import rendered_sections
from soulprint.models.events import MemoryWritten, SectionsPublished
from soulprint.models.sections import Sections


def register(rt) -> None:
    @rt.app.agent(rt.topics.memory, name="soulprint.sections")
    async def sections_v2(stream):
        async for event in stream:
            if isinstance(event, MemoryWritten):
                await contained_full_pass(rt, "sections", event, lambda: rewrite_sections(rt, event))


async def rewrite_sections(rt, event: MemoryWritten) -> None:
    if not await rt.db.advance_full_pass(event.job_id, "memory", "sections"):
        return
    job = await rt.db.get_job(event.job_id)
    memory = await rt.db.get_memory(event.job_id)
    memory_md = memory["memory_md"] if memory else event.memory_md
    samples = [SampledConversation(**s) for s in (job["sample"] or [])]
    request = sections_v2_request(event.user_id, event.job_id, memory_md, samples, job["profile"] or {})
    result = await rt.llm.complete(request)
    if not result.ok:
        await rt.db.fail_full_pass(event.job_id, f"sections v2: {result.error}")
        return
    sections = Sections.from_result(result)
    text = sections.soulprint_text(memory_md)
    await rt.db.store_soulprint(
        user_id=event.user_id, job_id=event.job_id, version=2, sections=sections.to_dict(),
        rendered=rendered_sections(sections), soulprint_text=text, memory_md=memory_md,
        offline=sections.offline,
    )
    await rt.db.complete_full_pass(event.job_id)
    await rt.topics.sections.send(
        key=event.user_id,
        value=SectionsPublished(job_id=event.job_id, user_id=event.user_id, version=2,
                                offline=sections.offline, soulprint_text=text),
    )
