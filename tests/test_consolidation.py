"""Consolidation: duplicates, contradictions over time, scale, and LLM reduction rounds."""

from __future__ import annotations

import asyncio
import copy
import random

from soulprint.domain.consolidation import (
    apply_reduction,
    consolidate,
    consolidated_tokens,
    reduce_requests,
    reduce_until_fits,
    render_facts,
)
from soulprint.domain.prompts.reduce import ReduceAnswer
from soulprint.domain.tokens import estimate_tokens
from soulprint.models.facts import FACT_CATEGORIES, MAX_SOURCES, ConsolidatedFact, Fact, consolidated_key, fact_id
from soulprint.models.llm import LLMResult
from soulprint.services.llm.offline_provider import OfflineClient
from support.fixtures_llm import valid

DAY = 86_400.0
T0 = 1_700_000_000.0

_seq = 0


def fact(text: str, *, subject: str = "s", category: str = "preferences", t: float | None = T0,
         conv: str | None = None, chunk: str | None = None, **kw) -> Fact:
    global _seq
    _seq += 1
    chunk = chunk or f"chunk-{_seq}"
    return Fact(fact_id=fact_id(chunk, 0), user_id="u", job_id="j", chunk_id=chunk,
                conversation_id=conv or f"conv-{_seq}", message_ids=[f"m-{_seq}"], category=category, text=text,
                subject=subject, message_time=t, **kw)


def test_exact_duplicates_merge_with_mentions_and_first_last_seen():
    facts = [fact("Prefers concise answers.", subject="answer length", t=T0 + k * DAY) for k in (5, 1, 9)]
    [c] = consolidate(facts)
    assert c.text == "Prefers concise answers."
    assert c.mentions == 3
    assert (c.first_seen, c.last_seen) == (T0 + DAY, T0 + 9 * DAY)
    assert c.history == []
    assert c.key == consolidated_key("preferences", "answer length")
    # Sources point back at every chunk, newest first.
    assert [s["chunk_id"] for s in c.sources] == [facts[2].chunk_id, facts[0].chunk_id, facts[1].chunk_id]


def test_mentions_count_conversations_not_overlapping_chunks():
    facts = [fact("Is vegetarian.", subject="diet", conv="conv-x", t=T0),
             fact("Is vegetarian.", subject="diet", conv="conv-x", t=T0 + 60),  # overlapping chunk
             fact("Is vegetarian.", subject="diet", conv="conv-y", t=T0 + DAY)]
    [c] = consolidate(facts)
    assert c.mentions == 2 and len(c.sources) == 3


def test_near_duplicates_merge():
    facts = [fact("Prefers concise answers with code examples.", t=T0),
             fact("prefers concise answers, with code examples!", t=T0 + DAY),
             fact("Prefers concise answer with code example.", t=T0 + 2 * DAY),  # difflib catches plurals
             fact("Prefers concise answers with code examples and no preamble.", t=T0 + 3 * DAY)]  # Jaccard 0.75
    out = consolidate(facts)
    assert len(out) == 1
    [c] = out
    # The last statement differs too much to be a restatement: it is the new truth.
    assert c.text == "Prefers concise answers with code examples and no preamble."
    assert c.history == [{"text": "Prefers concise answer with code example.", "from": T0,
                          "until": T0 + 3 * DAY}]


def test_contradiction_resolved_by_time_with_history_period():
    facts = [fact("Lives in Lisbon.", subject="Home City", category="decisions", t=T0),
             fact("Lives in Lisbon.", subject="home city", category="decisions", t=T0 + 100 * DAY),
             fact("Lives in Berlin.", subject="home city", category="decisions", t=T0 + 200 * DAY),
             fact("Lives in Berlin.", subject="home city", category="decisions", t=T0 + 300 * DAY)]
    random.Random(1).shuffle(facts)
    [c] = consolidate(facts)
    assert c.text == "Lives in Berlin."
    assert c.mentions == 2 and c.first_seen == T0 + 200 * DAY and c.last_seen == T0 + 300 * DAY
    assert c.history == [{"text": "Lives in Lisbon.", "from": T0, "until": T0 + 200 * DAY}]
    # Sources: the current statement's first.
    assert len(c.sources) == 4
    assert [s["chunk_id"] for s in c.sources[:2]] == [f.chunk_id for f in sorted(facts, key=lambda f: -f.message_time)[:2]]


def test_moving_back_gives_a_timeline():
    facts = [fact("Lives in Lisbon.", subject="home city", t=T0),
             fact("Lives in Berlin.", subject="home city", t=T0 + 10 * DAY),
             fact("Lives in Lisbon.", subject="home city", t=T0 + 20 * DAY)]
    [c] = consolidate(facts)
    assert c.text == "Lives in Lisbon."
    assert c.history == [{"text": "Lives in Lisbon.", "from": T0, "until": T0 + 10 * DAY},
                         {"text": "Lives in Berlin.", "from": T0 + 10 * DAY, "until": T0 + 20 * DAY}]


def test_undated_statements_never_overrule_dated_ones():
    facts = [fact("Works at Stripe.", subject="employer", t=None),
             fact("Works at Verdant.", subject="employer", t=T0)]
    [c] = consolidate(facts)
    assert c.text == "Works at Verdant."
    assert c.history[0]["text"] == "Works at Stripe." and c.history[0]["from"] is None


def test_same_sentence_under_two_subjects_is_one_fact():
    facts = [fact("Lives in Lisbon.", subject="home city"), fact("Lives in Lisbon.", subject="home city"),
             fact("Lives in Lisbon.", subject="city of residence")]
    [c] = consolidate(facts)
    assert c.subject == "home city" and c.mentions == 3


def test_different_subjects_and_categories_stay_apart_in_canonical_order():
    facts = [fact("Decided to learn dbt.", subject="next skill", category="decisions"),
             fact("Believes small teams ship better.", subject="team size", category="beliefs"),
             fact("Prefers tea.", subject="drink"), fact("Prefers tea.", subject="drink"),
             fact("Prefers vim.", subject="editor"),
             fact("Is building Harbor.", subject="harbor: purpose", category="projects", project="Harbor")]
    out = consolidate(facts)
    assert [c.category for c in out] == ["preferences", "preferences", "projects", "beliefs", "decisions"]
    assert [c.text for c in out[:2]] == ["Prefers tea.", "Prefers vim."]  # most mentioned first
    assert out[2].project == "Harbor"


def test_consolidation_is_deterministic():
    rng = random.Random(7)
    facts = [fact(f"Statement {rng.randint(0, 30)} about things.", subject=f"s{rng.randint(0, 10)}",
                  category=rng.choice(FACT_CATEGORIES), t=T0 + rng.randint(0, 1000) * DAY) for _ in range(400)]
    a = [c.to_dict() for c in consolidate(facts)]
    shuffled = copy.deepcopy(facts)
    rng.shuffle(shuffled)
    assert [c.to_dict() for c in consolidate(shuffled)] == a


def test_sources_are_capped_and_dicts_round_trip():
    facts = [fact("Drinks oat milk.", subject="milk", t=T0 + k) for k in range(50)]
    [c] = consolidate(facts)
    assert c.mentions == 50 and len(c.sources) == MAX_SOURCES
    assert ConsolidatedFact.from_dict(c.to_dict()) == c


def test_fifty_thousand_facts_consolidate():
    rng = random.Random(3)
    words = [f"w{k}" for k in range(3000)]
    facts = []
    for i in range(50_000):
        # A few hot subjects (big buckets of mostly distinct statements) and a long tail.
        subject = f"hot {i % 5}" if i % 4 == 0 else f"subject {rng.randint(0, 8000)}"
        text = " ".join(rng.choice(words) for _ in range(rng.randint(6, 16)))
        if i % 10 == 0 and facts:
            text = facts[rng.randrange(len(facts))].text  # some exact repeats
        facts.append(fact(text, subject=subject, category=FACT_CATEGORIES[i % 5], t=T0 + rng.randint(0, 10**7)))
    out = consolidate(facts)
    assert 0 < len(out) <= len({(f.category, f.subject) for f in facts})
    assert sum(1 for c in out if c.history) > 0


def test_render_and_token_estimate():
    facts = [fact("Prefers tea.", subject="drink", t=T0, date="2024-05"),
             fact("Is building Harbor.", subject="harbor", category="projects", project="Harbor", t=T0 + DAY)]
    out = consolidate(facts)
    text = render_facts(out)
    assert text.splitlines()[0] == "## preferences"
    assert "- Prefers tea. {1x; 2023-11-14; date 2024-05}" in text
    assert "project Harbor" in text
    assert consolidated_tokens(out) == estimate_tokens(text)


# --------------------------------------------------------------------------- reduction


def cf(i: int, *, subject: str | None = None, mentions: int = 1, last: float | None = None,
       category: str = "preferences", text: str | None = None) -> ConsolidatedFact:
    subject = subject or f"subject {i:04d}"
    last = T0 + i * DAY if last is None else last
    return ConsolidatedFact(key=consolidated_key(category, subject), category=category,
                            text=text or f"Fact number {i} says something specific about the person.",
                            subject=subject, mentions=mentions, first_seen=last - DAY, last_seen=last,
                            sources=[{"chunk_id": f"ch{i}", "conversation_id": f"cv{i}", "message_ids": [f"m{i}"]}],
                            history=[{"text": f"old {i}", "from": last - 9 * DAY, "until": last - DAY}])


def test_reduce_requests_batches_within_budget():
    facts = [cf(i) for i in range(200)]
    pairs = reduce_requests(facts, batch_tokens=1000, job_id="j")
    seen = [id(f) for _, batch in pairs for f in batch]
    assert len(seen) == len(set(seen))
    for req, batch in pairs:
        assert len(batch) >= 2
        assert req.task == "reduce_facts" and req.answer is ReduceAnswer and req.stage == "reduce_facts"
        assert req.job_id == "j" and req.cache_system
        user = req.messages[0]["content"]
        assert estimate_tokens(user) <= 1000 + 100
        assert f"1. [preferences | {batch[0].subject}]" in user
        assert [p["index"] for p in req.payload["facts"]] == list(range(1, len(batch) + 1))


def test_apply_reduction_merges_members_and_keeps_the_rest():
    batch = [cf(1, mentions=2), cf(2, mentions=3), cf(3), cf(4)]
    data = {"facts": [
        {"merged_from": [1, 2, 2, 99], "category": "preferences", "subject": "Tea", "text": "Prefers green tea.",
         "date": "2024"},
        {"merged_from": [2, 3], "category": "beliefs", "subject": "x", "text": "Index 2 is taken: only 3 counts."},
        {"merged_from": [99], "category": "beliefs", "subject": "y", "text": "No valid member: ignored."},
    ]}
    out = apply_reduction(batch, data)
    by_text = {f.text: f for f in out}
    tea = by_text["Prefers green tea."]
    assert tea.mentions == 5 and tea.subject == "tea" and tea.date == "2024"
    assert tea.first_seen == batch[0].first_seen and tea.last_seen == batch[1].last_seen
    assert [s["chunk_id"] for s in tea.sources] == ["ch2", "ch1"]
    assert [h["text"] for h in tea.history] == ["old 1", "old 2"]
    assert tea.key == consolidated_key("preferences", "tea")
    assert by_text["Index 2 is taken: only 3 counts."].mentions == 1
    assert "No valid member: ignored." not in by_text
    assert batch[3] in out  # not mentioned: kept unchanged
    assert len(out) == 3
    assert {f.key for f in apply_reduction(batch, {"facts": "junk"})} == {f.key for f in batch}
    assert {f.key for f in apply_reduction(batch, None)} == {f.key for f in batch}
    assert apply_reduction(batch, ReduceAnswer.model_validate(data)) == out


async def test_reduce_until_fits_runs_rounds_concurrently():
    facts = [cf(i) for i in range(120)]
    budget = consolidated_tokens(facts) // 5
    in_flight = 0
    peak = 0
    calls = 0

    async def fake_llm(req):
        nonlocal in_flight, peak, calls
        calls += 1
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0)  # yield: concurrent calls of a round all start before any ends
        in_flight -= 1
        n = len(req.payload["facts"])
        # Merge neighbours pairwise, short text: each round halves the batch.
        groups = [{"merged_from": [k, k + 1], "category": "preferences", "subject": f"merged {req.payload['facts'][k - 1]['subject']}",
                   "text": f"Merged {k}."} for k in range(1, n, 2)]
        return LLMResult(ok=True, data={"facts": groups})

    report = await reduce_until_fits(facts, fake_llm, budget_tokens=budget, batch_tokens=600, max_rounds=6)
    assert report.fits and report.truncated == 0
    assert report.tokens_after <= budget < report.tokens_before
    assert report.rounds >= 2 and report.requests == calls and peak > 1
    assert sum(f.mentions for f in report.facts) == 120  # every mention still accounted for
    assert consolidated_tokens(report.facts) == report.tokens_after


async def test_reduce_until_fits_truncates_deterministically_when_the_model_merges_nothing():
    facts = [cf(i, mentions=1 + i % 3) for i in range(60)]
    budget = consolidated_tokens(facts) // 2

    async def lazy_llm(req):
        return {"facts": []}

    a = await reduce_until_fits(facts, lazy_llm, budget_tokens=budget, batch_tokens=800)
    b = await reduce_until_fits(list(reversed(facts)), lazy_llm, budget_tokens=budget, batch_tokens=800)
    assert a.rounds == 1  # no progress: no second paid round
    assert a.truncated > 0 and len(a.dropped_keys) == a.truncated and not a.fits
    assert a.tokens_after <= budget
    assert [f.key for f in a.facts] == [f.key for f in b.facts]
    kept_min = min(f.mentions for f in a.facts)
    dropped = [f for f in facts if f.key in set(a.dropped_keys)]
    assert max(f.mentions for f in dropped) <= kept_min  # the least mentioned go first


async def test_failed_batches_are_kept():
    facts = [cf(i) for i in range(40)]

    async def broken_llm(req):
        if req.payload["facts"][0]["index"] == 1 and "subject 0000" in req.messages[0]["content"]:
            raise RuntimeError("boom")
        return LLMResult(ok=False, error="rate limited", error_kind="rate_limited")

    report = await reduce_until_fits(facts, broken_llm, budget_tokens=10**6, batch_tokens=500)
    assert report.rounds == 0  # already fits: nothing sent
    report = await reduce_until_fits(facts, broken_llm, budget_tokens=consolidated_tokens(facts) - 1,
                                     batch_tokens=500, max_rounds=3)
    assert report.failed_requests == report.requests > 0
    assert report.truncated >= 1 and len(report.facts) == 40 - report.truncated


async def test_offline_reduce_validates_and_merges_by_subject_head():
    facts = [cf(1, subject="harbor: database", category="projects", text="Uses Postgres for Harbor."),
             cf(2, subject="harbor: launch", category="projects", text="Launches Harbor in September."),
             cf(3, subject="diet", text="Is vegetarian.")]
    [(req, batch)] = reduce_requests(facts, batch_tokens=10_000)
    client = OfflineClient()
    res = await client.complete(req)
    assert res.ok and res.offline, res.error
    assert valid(ReduceAnswer, res.data) and isinstance(res.answer, ReduceAnswer)
    assert res.data == (await client.complete(copy.deepcopy(req))).data
    out = apply_reduction(batch, res.data)
    assert len(out) == 2
    harbor = next(f for f in out if f.subject == "harbor")
    assert harbor.text == "Launches Harbor in September; Uses Postgres for Harbor." and harbor.mentions == 2
