"""MEMORY document and the version-2 sections request."""

from __future__ import annotations

import copy

from soulprint.domain.consolidation import render_facts
from soulprint.domain.memory_doc import (
    EMPTY_SECTION,
    MEMORY_KEYS,
    MEMORY_MAX_TOKENS,
    MEMORY_SECTIONS,
    memory_from_facts,
    memory_from_result,
    memory_request,
    parse_memory_markdown,
    sections_v2_from_result,
    sections_v2_request,
)
from soulprint.domain.prompts.memory import MEMORY, MemoryAnswer
from soulprint.domain.prompts.sections_v2 import SECTIONS_V2
from soulprint.domain.sampling import SampledConversation
from soulprint.domain.tokens import estimate_tokens
from soulprint.models.domain import ProfileHints
from soulprint.models.facts import ConsolidatedFact, consolidated_key
from soulprint.models.llm import tool_schema
from soulprint.models.sections import OFFLINE_NOTE, Sections, SectionsAnswer
from soulprint.services.llm.offline_provider import OfflineClient
from support.fixtures_llm import fake_server, fast_config, fresh_limiter, valid

__all__ = ["fake_server"]

DAY = 86_400.0
T0 = 1_700_000_000.0  # 2023-11-14


def cf(category: str, subject: str, text: str, *, mentions: int = 1, first: float | None = T0,
       last: float | None = T0, date: str | None = None, history=None, project: str | None = None):
    return ConsolidatedFact(key=consolidated_key(category, subject), category=category, text=text, subject=subject,
                            project=project, date=date, mentions=mentions, first_seen=first, last_seen=last,
                            sources=[{"chunk_id": "c", "conversation_id": "v", "message_ids": ["m"]}],
                            history=history or [])


FACTS = [
    cf("preferences", "answer length", "Prefers short answers.", mentions=12, first=T0, last=T0 + 400 * DAY),
    cf("preferences", "spelling", "Prefers British spelling."),
    cf("projects", "harbor: purpose", "Is building Harbor, a photo backup app in Rust.", mentions=5,
       project="Harbor"),
    cf("dates", "sister ana: wedding", "Their sister Ana marries in Porto.", date="2025-06-14"),
    cf("beliefs", "team size", "Believes small teams ship better products."),
    cf("decisions", "home city", "Lives in Berlin.", first=T0 + 200 * DAY, last=T0 + 300 * DAY,
       history=[{"text": "Lives in Lisbon.", "from": T0, "until": T0 + 200 * DAY}]),
]


def headings(md: str) -> list[str]:
    return [line[3:] for line in md.splitlines() if line.startswith("## ")]


# --------------------------------------------------------------------------- memory


def test_memory_request_shape():
    req = memory_request("u1", "j1", FACTS)
    assert req.task == "memory" and req.stage == "memory" and req.model_role == "fast"
    assert req.answer is MemoryAnswer and req.schema == tool_schema(MemoryAnswer) and req.schema_name == MEMORY.schema_name and req.max_tokens == 4000
    assert req.system == MEMORY.system and req.cache_system and req.job_id == "j1"
    user = req.messages[0]["content"]
    assert render_facts(FACTS) in user and "(6 facts" in user
    assert [f["key"] for f in req.payload["facts"]] == [f.key for f in FACTS]
    assert "sources" not in req.payload["facts"][0]
    assert memory_request("u1", "j1", FACTS, model_role="chat", max_tokens=6000).model_role == "chat"


def test_memory_request_keeps_to_its_input_budget():
    many = [cf("preferences", f"s{i}", f"Fact {i} " + "detail " * 30, mentions=i) for i in range(500)]
    req = memory_request("u1", "j1", many, input_budget_tokens=5_000)
    assert estimate_tokens(req.messages[0]["content"]) < 5_000 + 200
    kept = {f["subject"] for f in req.payload["facts"]}
    assert "s499" in kept and "s0" not in kept  # the most mentioned stay


def test_memory_from_result_has_the_five_headings_in_order():
    data = {"sections": {
        "preferences": ["- Prefers short answers (since 2023-11).", "  ", "Prefers short answers (since 2023-11)."],
        "projects": ["Is building Harbor (launch 2025-09)."],
        "important_dates": [],
        "beliefs_values": ["1. Believes small teams ship better."],
        "decisions_context": ["Lives in Berlin (since 2024-06; before that Lisbon)."],
    }}
    md = memory_from_result(data)
    assert md.startswith("# MEMORY\n\n## Preferences\n- Prefers short answers (since 2023-11).\n")
    assert headings(md) == list(MEMORY_SECTIONS)
    assert md.count("Prefers short answers") == 1  # never repeated
    assert "- Believes small teams ship better." in md
    assert f"## Important Dates\n{EMPTY_SECTION}" in md
    assert OFFLINE_NOTE not in md
    # An answer the model does not validate gives the empty document, with its five headings.
    assert headings(memory_from_result({"Beliefs & Values": ["Values honesty."]})) == list(MEMORY_SECTIONS)
    assert headings(memory_from_result(None)) == list(MEMORY_SECTIONS)
    assert memory_from_result(MemoryAnswer.model_validate(data)) == md


def test_memory_is_capped_deterministically():
    data = {"sections": {k: [f"{k} bullet {i}: " + f"{k} detail " * 12 for i in range(200)]
                         for k in MEMORY_KEYS}}
    md = memory_from_result(data)
    assert estimate_tokens(md) <= MEMORY_MAX_TOKENS
    assert headings(md) == list(MEMORY_SECTIONS)
    parsed = parse_memory_markdown(md)
    for k in MEMORY_KEYS:
        # Every section keeps its first (most important) bullets, in order.
        assert parsed[k] and parsed[k] == [b.strip() for b in data["sections"][k][: len(parsed[k])]]
    assert max(map(len, parsed.values())) - min(map(len, parsed.values())) <= 1
    assert memory_from_result(copy.deepcopy(data)) == md


def test_memory_from_facts_is_dated_and_labelled():
    md = memory_from_facts(FACTS)
    assert headings(md) == list(MEMORY_SECTIONS)
    assert OFFLINE_NOTE in md
    assert "- Prefers short answers. (mentioned 2023-11–2024-12)" in md
    assert "Their sister Ana marries in Porto. (2025-06-14; mentioned 2023-11)" in md
    assert "Lives in Berlin. (mentioned 2024-06–2024-09; before: Lives in Lisbon, until 2024-06)" in md
    sections = parse_memory_markdown(md)
    assert sections["important_dates"] and sections["decisions_context"]
    assert estimate_tokens(memory_from_facts(FACTS * 0 + [
        cf("preferences", f"s{i}", "Long fact " * 40) for i in range(300)])) <= MEMORY_MAX_TOKENS


async def test_offline_memory_task_validates_and_is_deterministic():
    client = OfflineClient()
    req = memory_request("u1", "j1", FACTS)
    a = await client.complete(req)
    b = await client.complete(copy.deepcopy(req))
    assert a.ok and a.offline, a.error
    assert valid(MemoryAnswer, a.data) and isinstance(a.answer, MemoryAnswer)
    assert a.data == b.data
    md = memory_from_result(a.data, offline=a.offline)
    assert headings(md) == list(MEMORY_SECTIONS) and OFFLINE_NOTE in md
    assert "2025-06-14" in md


# --------------------------------------------------------------------------- sections v2


def sample(i: int, words: int = 50, score: float | None = None) -> SampledConversation:
    text = f"User: conversation {i} " + " ".join(f"w{i}_{k}" for k in range(words))
    return SampledConversation(conversation_id=f"conv-{i}", title=f"Chat {i}", created_at=T0 + i * DAY,
                               updated_at=None, excerpt=text, user_words=words,
                               score=float(i) if score is None else score, newest_time=T0 + i * DAY)


def test_sections_v2_request_shape():
    md = memory_from_facts(FACTS, offline=False)
    prof = ProfileHints(user_profile="Data engineer.", user_instructions="Be brief.", saved_memory=["Has a cat."])
    req = sections_v2_request("u1", "j1", md, [sample(1), sample(2)], prof)
    assert req.task == "sections_v2" and req.stage == "sections_v2"
    assert req.answer is SectionsAnswer and req.schema_name == SECTIONS_V2.schema_name
    assert req.system == SECTIONS_V2.system and req.cache_system
    user = req.messages[0]["content"]
    assert md.strip() in user and "### Chat 1 (2023-11-15)" in user and "Be brief." in user
    assert req.payload["memory"] == md
    assert [s["conversation_id"] for s in req.payload["samples"]] == ["conv-1", "conv-2"]
    assert req.payload["profile"]["saved_memory"] == ["Has a cat."]


def test_sections_v2_samples_are_trimmed_to_the_budget():
    md = memory_from_facts(FACTS)
    samples = [sample(i, words=400) for i in range(200)]
    budget = 30_000
    req = sections_v2_request("u1", "j1", md, samples, {}, budget_tokens=budget)
    total = (estimate_tokens(req.system) + estimate_tokens(req.messages[0]["content"])
             + estimate_tokens(str(req.schema)))
    assert total <= budget
    kept = [s["conversation_id"] for s in req.payload["samples"]]
    assert 0 < len(kept) < 200
    # Lowest scores dropped first; the rest keep the sampler's order.
    assert kept == [f"conv-{i}" for i in range(200 - len(kept), 200)]
    assert "conv-199" in kept
    full = sections_v2_request("u1", "j1", md, samples[:3], {})
    assert len(full.payload["samples"]) == 3


async def test_offline_sections_v2_uses_memory():
    md = memory_from_facts(FACTS + [cf("decisions", "stack", "Uses PostgreSQL and Docker for Harbor.")])
    req = sections_v2_request("u1", "j1", md, [sample(1)], {"user_instructions": "Be brief."})
    client = OfflineClient()
    res = await client.complete(req)
    assert res.ok and res.offline, res.error
    assert valid(SectionsAnswer, res.data)
    assert res.data == (await client.complete(copy.deepcopy(req))).data
    s = sections_v2_from_result(res, md)
    assert s.offline
    # MEMORY's statements are read, not copied: the places and tools in them are found...
    assert "Berlin" in s.user.locations
    assert "PostgreSQL" in s.tools.stack and "Docker" in s.tools.tools
    # ...and no section repeats one of them.
    items = [i for part in s.to_dict().values() if isinstance(part, dict)
             for v in part.values() if isinstance(v, list) for i in v]
    assert not any("Lives in Berlin" in i or "Prefers short answers" in i or "small teams" in i for i in items)


async def test_memory_and_sections_through_the_real_sdk(fake_server):
    from soulprint.services.llm.anthropic_provider import AnthropicClient

    client = AnthropicClient(fast_config(fake_server.url, cache_enabled=False), limiter=fresh_limiter())
    try:
        res = await client.complete(memory_request("u1", "j1", FACTS))
        assert res.ok, res.error
        md = memory_from_result(res.data)
        assert headings(md) == list(MEMORY_SECTIONS)
        res2 = await client.complete(sections_v2_request("u1", "j1", md, [sample(1)], {}))
        assert res2.ok, res2.error
        assert not Sections.from_result(res2).is_empty()
    finally:
        await client.aclose()
