"""MEMORY and the v2 sections never repeat a statement; the shipped sample says each thing once.

The shipped sample's workspace used to say "Decided to move the pipeline to
Dagster" five times over USER.md, AGENTS.md and MEMORY.md: two facts that
consolidation kept apart (other subjects, other words), the offline sections
copying MEMORY's bullets into several lists, and the quick rules' own reading
of the same sentence in first person.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from soulprint.agents import consolidate as consolidate_agent
from soulprint.domain.memory_doc import distinct_sections, memory_from_facts, parse_memory_markdown, render_memory
from soulprint.domain.statements import Statement, StatementSet, restates
from soulprint.models.facts import ConsolidatedFact, consolidated_key
from soulprint.models.sections import Sections
from soulprint.services.embeddings import LocalEmbedder
from support.pipeline import import_and_wait

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "sample-export.zip"


def same(a: str, b: str) -> bool:
    return restates(Statement.of(a), Statement.of(b))


# --------------------------------------------------------------------------- what counts as a repeat


def test_a_repeat_in_other_person_case_articles_or_with_more_said_is_a_repeat():
    assert same("Decided to move the pipeline to Dagster in March and I don't regret it",
                "Decided to move the pipeline to Dagster in March and they don't regret it.")
    assert same("data engineer at Tidewater", "a data engineer at Tidewater")
    assert same("Prefers concise answers with code first", "prefers concise answers with code first.")
    assert same("Decided to move the pipeline to Dagster", "Decided to move the pipeline to Dagster in March.")
    assert same("Avoid long preambles, please just get to the point", "Dislikes long preambles, please just get "
                                                                      "to the point.")


def test_different_statements_labels_and_numbers_are_not_repeats():
    assert not same("Decided to move the pipeline to Dagster.", "Decided to move the pipeline to Airflow.")
    assert not same("Python", "Prefers Python for scripting.")  # a label inside a statement
    assert not same("Noted 2024-03-03: the invoice is wrong.", "Noted 2025-03-03: the invoice is wrong.")
    assert not same("Lives in Berlin.", "Lives in Munich.")
    written = StatementSet()
    assert written.add("Lives in Berlin.") and not written.add("lives in berlin") and written.add("Lives in Porto.")
    assert not written.add("  ")  # nothing to say is not a statement


def cf(category: str, subject: str, text: str) -> ConsolidatedFact:
    return ConsolidatedFact(key=consolidated_key(category, subject), category=category, text=text, subject=subject,
                            first_seen=1_700_000_000.0, last_seen=1_700_000_000.0)


def test_memory_says_each_statement_once_across_its_five_lists():
    md = render_memory({"preferences": ["Prefers short answers.", "prefers short answers"],
                        "projects": ["Is building Harbor."],
                        "decisions_context": ["Is building Harbor.", "Chose Postgres for Harbor."]})
    assert parse_memory_markdown(md) == {
        "preferences": ["Prefers short answers."], "projects": ["Is building Harbor."], "important_dates": [],
        "beliefs_values": [], "decisions_context": ["Chose Postgres for Harbor."]}
    # The dating of the offline bullets does not hide a repeat.
    facts = [cf("decisions", "a", "Moved the pipeline to Dagster in March."), cf("projects", "b", "Moved the "
                                                                                   "pipeline to Dagster in March")]
    assert sum("Dagster" in line for line in memory_from_facts(facts).splitlines()) == 1


def test_sections_never_repeat_memory_or_each_other_and_the_person_sections_keep_theirs():
    md = render_memory({"projects": ["Is building Harbor, a shipment tracker. (mentioned 2025-02)"]})
    sections = Sections.from_dict({
        "soul": {"values": ["Their goals come first: ship the Harbor beta by June", "Respect their time"]},
        "user": {"goals": ["Is building Harbor, a shipment tracker.", "Ship the Harbor beta by June"],
                 "work": ["data engineer at Tidewater", "a data engineer at Tidewater"]},
        "agents": {"remember": ["I'm building Harbor, a shipment tracker", "Metric units"]},
        "tools": {"stack": ["Python"], "tools": ["Python"]},
    }, offline=True)
    out = distinct_sections(sections, md)
    assert out.offline
    assert out.user.goals == ["Ship the Harbor beta by June"]  # MEMORY has the other
    assert out.user.work == ["data engineer at Tidewater"]
    assert out.agents.remember == ["Metric units"]
    assert out.soul.values == ["Respect their time"]  # USER keeps the goal, SOUL's restatement goes
    assert (out.tools.tools, out.tools.stack) == (["Python"], [])  # fields in order: tools, then stack


# --------------------------------------------------------------------------- the shipped sample, end to end


def statements(text: str) -> list[str]:
    """Every bullet of the soulprint (five sections and MEMORY), without MEMORY's dating, levelled simply."""
    out = []
    for line in text.splitlines():
        if line.startswith("- "):
            bullet = re.sub(r"\s*\([^()]*\bmentioned\b[^()]*\)\s*$", "", line[2:])
            words = [{"i": "they", "my": "their", "m": "re"}.get(w, w) for w in re.findall(r"\w+", bullet.lower())]
            out.append(" ".join(w for w in words if w not in ("a", "an", "the")))
    return out


async def test_the_shipped_sample_states_each_thing_once(runtime, db, user_id, monkeypatch):
    """With the default local model behind consolidation (the hash embedder
    of the test stack sees words, not meaning, and has no threshold)."""
    local = LocalEmbedder()
    real = consolidate_agent.statement_vectors
    monkeypatch.setattr(consolidate_agent, "statement_vectors", lambda _embedder, facts: real(local, facts))

    job = await import_and_wait(runtime, user_id, SAMPLE)
    assert job.full_pass_status == "complete", job.full_pass_error
    soulprint = await db.soulprints.get(user_id)
    assert soulprint["version"] == 2
    text = soulprint["soulprint_text"]

    repeated = [s for s, n in Counter(statements(text)).items() if n > 1]
    assert repeated == []
    assert [line for line in text.splitlines() if "Dagster" in line] == [
        "- Decided to move the pipeline to Dagster in March and they don't regret it. (mentioned 2025-03–2025-05)"]
    # The merged decision kept both statements' conversations and messages.
    [dagster] = [f for f in await db.facts.load_consolidated(job.job_id) if "Dagster" in f.text]
    raw = [f for f in await db.facts.load(job.job_id) if "Dagster" in f.text]
    assert len(raw) == 2 and dagster.mentions == 2
    assert {s["chunk_id"] for s in dagster.sources} == {f.chunk_id for f in raw}
    assert {m for s in dagster.sources for m in s["message_ids"]} == {m for f in raw for m in f.message_ids}
    # Sintra's wedding, said three ways under two subjects, is one date too.
    assert sum("Sintra" in line for line in text.splitlines()) == 1
