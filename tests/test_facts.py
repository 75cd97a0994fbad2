"""Fact extraction: request packing, attribution, ids, and the offline and fake answers."""

from __future__ import annotations

import copy
import random
import uuid

import pytest

from soulprint.domain.facts import (
    MAX_TEXT_CHARS,
    ChunkForExtraction,
    build_fact_requests,
    by_conversation,
    is_small,
    pack_small_conversations,
    normalise_subject,
    parse_fact_answer,
    parse_fact_result,
)
from soulprint.domain.prompts.facts import FACTS, FactsAnswer, facts_answer_for
from soulprint.domain.tokens import estimate_tokens
from soulprint.models.facts import FACT_CATEGORIES, FACT_NAMESPACE, Fact, fact_id
from soulprint.services.llm.offline_provider import OfflineClient
from support.fake_anthropic import synthesise
from support.fixtures_llm import fake_server, fast_config, fresh_limiter, valid

__all__ = ["fake_server"]  # the fixture, imported so pytest registers it here

T0 = 1_735_689_600.0  # 2025-01-01


def chunk(i: int, content: str | None = None, *, conv: str | None = None, t: float | None = None,
          words: int = 40) -> ChunkForExtraction:
    body = content if content is not None else "User: " + " ".join(f"word{i}x{k}" for k in range(words))
    return ChunkForExtraction(
        chunk_id=f"chunk-{i:03d}", conversation_id=conv or f"conv-{i // 3}", title=f"Title {i}",
        content=f"Conversation: Title {i}\n{body}", message_ids=[f"m{i}a", f"m{i}b"],
        message_time=T0 + i * 3600 if t is None else t, token_count=estimate_tokens(body),
    )


# --------------------------------------------------------------------------- packing


def test_small_chunks_are_packed_and_every_chunk_is_sent_once():
    chunks = [chunk(i) for i in range(20)]
    pairs = build_fact_requests("u1", "j1", chunks, token_budget=600, max_chunks_per_request=8)
    sent = [c.chunk_id for _, group in pairs for c in group]
    assert sorted(sent) == sorted(c.chunk_id for c in chunks)
    assert len(pairs) < len(chunks)  # packed
    for req, group in pairs:
        assert 1 <= len(group) <= 8
        blocks = sum(estimate_tokens(f"{c.title}{c.content}") for c in group)
        assert len(group) == 1 or blocks <= 600
        assert req.task == "facts" and req.model_role == "fast" and req.stage == "facts"
        assert issubclass(req.answer, FactsAnswer) and req.schema_name == "record_facts"
        assert req.cache_system and req.system == FACTS.system and req.prompt_version == FACTS.version
        assert req.job_id == "j1" and req.payload["user_id"] == "u1"
        refs = [c["ref"] for c in req.payload["chunks"]]
        assert refs == [f"c{k}" for k in range(1, len(group) + 1)]
        assert [c["chunk_id"] for c in req.payload["chunks"]] == [c.chunk_id for c in group]
        user = req.messages[0]["content"]
        for ref, c in zip(refs, group):
            assert f'<chunk ref="{ref}" title="{c.title}" date="2025-01-' in user
        # The title is an attribute: the chunk's own header line is not repeated.
        assert "Conversation: " not in user


def test_max_chunks_per_request_and_big_chunks_alone():
    chunks = [chunk(i, words=5) for i in range(10)] + [chunk(50, words=3000)]
    pairs = build_fact_requests("u1", "j1", chunks, token_budget=2000, max_chunks_per_request=3)
    assert all(len(g) <= 3 for _, g in pairs)
    big = [g for _, g in pairs if any(c.chunk_id == "chunk-050" for c in g)]
    assert len(big) == 1 and len(big[0]) == 1


def test_requests_are_deterministic_whatever_the_input_order():
    chunks = [chunk(i) for i in range(15)]
    shuffled = chunks[:]
    random.Random(4).shuffle(shuffled)
    a = build_fact_requests("u1", "j1", chunks, token_budget=500)
    b = build_fact_requests("u1", "j1", shuffled, token_budget=500)
    assert [(r.messages, r.payload) for r, _ in a] == [(r.messages, r.payload) for r, _ in b]
    # One conversation's chunks stay together and in time order.
    order = [c.chunk_id for _, g in a for c in g]
    assert order == sorted(order)


def test_a_request_holds_one_conversation_whatever_else_is_in_the_batch():
    """Packing never depends on which conversations shared a facts batch (that is timing)."""
    alone = build_fact_requests("u1", "j1", [chunk(i, words=5, conv="a") for i in range(4)])
    mixed = build_fact_requests("u1", "j1", [chunk(i, words=5, conv="a") for i in range(4)]
                                + [chunk(i, words=5, conv="b") for i in range(4, 9)])
    assert all(len({c.conversation_id for c in g}) == 1 for _, g in mixed)
    assert [r.messages for r, g in mixed if g[0].conversation_id == "a"] == [r.messages for r, _ in alone]


def small_conversations(n: int, seed: int = 7) -> list[list[ChunkForExtraction]]:
    """n conversations of 1 to 3 short chunks each, in conversation-id order."""
    rng = random.Random(seed)
    out, i = [], 0
    for k in range(n):
        size = rng.randint(1, 3)
        out.append([chunk(i + j, conv=f"small-{k:03d}", words=rng.randint(5, 60)) for j in range(size)])
        i += size
    return out


def test_a_small_conversation_fills_at_most_half_a_request():
    assert is_small([chunk(i, conv="a", words=5) for i in range(4)])
    assert not is_small([chunk(i, conv="a", words=5) for i in range(5)])  # more than half the chunks
    assert not is_small([chunk(1, conv="a", words=3000)])  # more than half the tokens
    assert not is_small([])
    assert is_small([chunk(1, conv="a", words=400)], token_budget=6000)
    assert not is_small([chunk(1, conv="a", words=400)], token_budget=600)


def test_small_conversations_are_packed_whole_within_the_budget():
    conversations = small_conversations(60)
    packs = pack_small_conversations("u1", "j1", conversations, token_budget=1500)
    assert len(packs) < len(conversations) / 2  # far fewer requests than conversations
    sent = [c.chunk_id for _, group in packs for c in group]
    assert sent == [c.chunk_id for conv in conversations for c in conv]  # each once, in order
    for request, group in packs:
        assert len(group) <= 8
        by_conv = by_conversation(group)
        assert all(len(chunks) == len(next(conv for conv in conversations if conv[0].conversation_id == cid))
                   for cid, chunks in by_conv.items())  # never split
        assert [c["chunk_id"] for c in request.payload["chunks"]] == [c.chunk_id for c in group]
        if len(by_conv) > 1:
            assert sum(estimate_tokens(c.content) for c in group) <= 1500


def test_packs_left_after_some_got_their_facts_are_the_packs_that_were_left():
    """A redelivery packs what is still without facts: the same requests as the first time."""
    conversations = small_conversations(60, seed=3)
    first = pack_small_conversations("u1", "j1", conversations, token_budget=1500)
    done = {c.chunk_id for k in (0, 3, 4, len(first) - 1) for c in first[k][1]}
    left = [conv for conv in conversations if not any(c.chunk_id in done for c in conv)]
    again = pack_small_conversations("u1", "j1", left, token_budget=1500)
    expected = [(r.messages, r.payload) for r, g in first if not any(c.chunk_id in done for c in g)]
    assert [(r.messages, r.payload) for r, _ in again] == expected


def test_duplicate_chunks_are_sent_once():
    c = chunk(1)
    pairs = build_fact_requests("u1", "j1", [c, copy.deepcopy(c)])
    assert [len(g) for _, g in pairs] == [1]


# --------------------------------------------------------------------------- parsing


def three_chunks() -> list[ChunkForExtraction]:
    return [chunk(1, conv="conv-a"), chunk(2, conv="conv-b"), chunk(3, conv="conv-c")]


def test_facts_are_attributed_to_their_own_chunk():
    chunks = three_chunks()
    data = {"facts": [
        {"chunk": "c2", "category": "preferences", "text": "Prefers tea over coffee.", "subject": "Hot Drink"},
        {"chunk": "c1", "category": "projects", "text": "Is building Harbor.", "subject": "harbor: purpose",
         "project": "Harbor"},
        {"chunk": "c2", "category": "dates", "text": "Moves to Berlin in August 2025.", "subject": "move",
         "date": "2025-08"},
    ]}
    facts = parse_fact_result("u1", "j1", data, chunks)
    assert [(f.chunk_id, f.ordinal) for f in facts] == [("chunk-002", 0), ("chunk-001", 0), ("chunk-002", 1)]
    tea = facts[0]
    assert tea.conversation_id == "conv-b" and tea.message_ids == ["m2a", "m2b"]
    assert tea.message_time == chunks[1].message_time
    assert tea.user_id == "u1" and tea.job_id == "j1"
    assert tea.subject == "hot drink"
    assert tea.project is None and tea.date is None and tea.context is None
    assert facts[1].project == "Harbor" and facts[2].date == "2025-08"


def test_fact_ids_are_deterministic_per_chunk_and_ordinal():
    chunks = three_chunks()
    data = {"facts": [{"chunk": "c1", "category": "beliefs", "text": f"Believes thing {k}.", "subject": f"s{k}"}
                      for k in range(3)]}
    a = parse_fact_result("u1", "j1", data, chunks)
    b = parse_fact_result("u1", "j2", copy.deepcopy(data), chunks)
    assert [f.fact_id for f in a] == [f.fact_id for f in b]
    assert a[2].fact_id == str(uuid.uuid5(FACT_NAMESPACE, "chunk-001\x1f2")) == fact_id("chunk-001", 2)
    assert len({f.fact_id for f in a}) == 3
    assert Fact.from_dict(a[0].to_dict()) == a[0]


def test_unattributable_facts_are_dropped_and_counted_and_blanks_skipped():
    chunks = three_chunks()
    data = {"facts": [
        {"chunk": "c9", "category": "preferences", "text": "Unknown ref.", "subject": "x"},
        {"chunk": "c1", "category": "preferences", "text": "   ", "subject": "x"},
        {"chunk": "c3", "category": "decisions", "text": "  Chose   Rust\nfor Harbor. ", "subject": ""},
        {"chunk": "c2", "category": "preferences", "text": "Likes jazz.", "subject": "music"},
        {"chunk": "c2", "category": "preferences", "text": "likes jazz.", "subject": "music"},  # repeated
        {"chunk": "C2", "category": "preferences", "text": "Likes blues.", "subject": "music"},
    ]}
    parsed = parse_fact_answer("u1", "j1", data, chunks)
    assert [(f.chunk_id, f.category, f.text) for f in parsed.facts] == [
        ("chunk-003", "decisions", "Chose Rust for Harbor."),
        ("chunk-002", "preferences", "Likes jazz."),
    ]
    assert parsed.dropped == 2  # "c9" and "C2" name no chunk of the request
    assert parsed.facts[0].subject == "chose rust for harbor"  # no subject: keyed by its own words
    assert parse_fact_result("u1", "j1", data, chunks) == parsed.facts
    assert parse_fact_answer("u1", "j1", FactsAnswer.model_validate(data), chunks) == parsed


def test_an_answer_breaking_its_schema_yields_nothing():
    """Answers reach the parser validated; an invalid mapping (a bad category, junk) gives no facts."""
    chunks = three_chunks()
    bad = {"facts": [{"chunk": "c1", "category": "gossip", "text": "Bad category.", "subject": "x"}, "junk"]}
    assert parse_fact_answer("u1", "j1", bad, chunks).facts == []
    assert parse_fact_result("u1", "j1", None, chunks) == []
    assert parse_fact_result("u1", "j1", {"facts": "nope"}, chunks) == []


def test_text_is_capped():
    only = [chunk(7)]
    data = {"facts": [{"chunk": "c1", "category": "projects", "text": "word " * 200, "subject": "s"}]}
    [fact] = parse_fact_result("u1", "j1", data, only)
    assert fact.chunk_id == "chunk-007"
    assert len(fact.text) <= MAX_TEXT_CHARS and fact.text.endswith("…")


@pytest.mark.parametrize("n", [1, 3, 8])
def test_a_requests_schema_allows_exactly_its_own_refs(n):
    [(req, group)] = build_fact_requests("u1", "j1", [chunk(i, words=5, conv="c") for i in range(n)],
                                         max_chunks_per_request=8)
    refs = [f"c{i}" for i in range(1, n + 1)]
    assert len(group) == n and [c["ref"] for c in req.payload["chunks"]] == refs
    item = req.schema["properties"]["facts"]["items"]
    assert item["properties"]["chunk"]["enum"] == refs
    assert item["properties"]["category"]["enum"] == list(FACT_CATEGORIES)
    # The answer model checks it too: a ref outside the request is a schema error (then a repair).
    outside = {"facts": [{"chunk": f"c{n + 1}", "category": "beliefs", "text": "t", "subject": "s"}]}
    answer, errors = req.check(outside)
    assert answer is None and errors and errors[0].startswith("$.facts[0].chunk: ")
    inside = {"facts": [{"chunk": refs[-1], "category": "beliefs", "text": "t", "subject": "s"}]}
    assert req.check(inside)[1] == [] and facts_answer_for(tuple(refs)) is req.answer


def test_subject_normalisation():
    assert normalise_subject("  The Home City. ") == "home city"
    assert normalise_subject("Harbor:Database") == "harbor: database"
    assert normalise_subject("**User's** diet") == "diet"


def test_categories_are_one_list():
    from soulprint.domain.memory_doc import MEMORY_KEYS, memory_sections_from_facts
    from soulprint.domain.prompts.reduce import ReduceAnswer
    from soulprint.models.llm import tool_schema

    assert FACT_CATEGORIES == ("preferences", "projects", "dates", "beliefs", "decisions")
    reduce_item = tool_schema(ReduceAnswer)["properties"]["facts"]["items"]
    assert reduce_item["properties"]["category"]["enum"] == list(FACT_CATEGORIES)
    assert list(memory_sections_from_facts([])) == list(MEMORY_KEYS) and len(MEMORY_KEYS) == len(FACT_CATEGORIES)


# --------------------------------------------------------------------------- offline rules

CONVO = [
    ChunkForExtraction("k1", "conv1", "Harbor", (
        "Conversation: Harbor\n"
        "User: I'm building Harbor, a self-hosted photo backup app in Rust. I prefer concise answers.\n"
        "Assistant: I love Go and I decided to use Mongo.\n"
        "User: We decided to use Postgres for the metadata."), ["m1", "m2", "m3"], T0, 60),
    ChunkForExtraction("k2", "conv2", "Family", (
        "User: My sister's wedding is on June 14, 2025 in Porto. Let's talk next week.\n"
        "User: I believe small teams ship better products."), ["m4"], T0 + 86400, 40),
    ChunkForExtraction("k3", "conv3", "Style", "User: I hate long preambles. The launch is on 2025-09-01.",
                       ["m5"], T0 + 2 * 86400, 20),
]


async def extract_offline(chunks):
    client = OfflineClient()
    for req, group in build_fact_requests("u1", "j1", chunks):
        res = await client.complete(req)
        assert res.ok and res.offline, res.error
        assert valid(req.answer, res.data) and isinstance(res.answer, FactsAnswer)
        yield req, group, res


async def test_offline_facts_validate_and_are_attributed():
    facts = []
    async for _req, group, res in extract_offline(CONVO):
        facts += parse_fact_result("u1", "j1", res.data, group)
    by = {(f.chunk_id, f.category): f for f in facts}
    assert by[("k1", "projects")].text.startswith("Is building Harbor")
    assert by[("k1", "projects")].project == "Harbor"
    assert by[("k1", "preferences")].text == "Prefers concise answers."
    assert by[("k1", "decisions")].text == "Decided to use Postgres for the metadata."
    assert by[("k2", "dates")].date == "2025-06-14"
    assert by[("k2", "beliefs")].text == "Believes small teams ship better products."
    assert by[("k3", "dates")].date == "2025-09-01"
    assert by[("k3", "preferences")].text == "Dislikes long preambles."
    texts = " ".join(f.text for f in facts)
    # Only the person's lines: the assistant's "I love Go" / "Mongo" are not facts about them.
    assert "Go" not in texts.split() and "Mongo" not in texts
    assert "next week" not in texts
    assert all(f.category in FACT_CATEGORIES for f in facts)


async def test_offline_facts_are_deterministic():
    a = [res.data async for _, _, res in extract_offline(CONVO)]
    b = [res.data async for _, _, res in extract_offline(copy.deepcopy(CONVO))]
    assert a == b


# --------------------------------------------------------------------------- model answers


def test_synthesised_answers_validate_and_are_attributed():
    """The fake server's synthesis (schema-valid, content random) names only the request's refs:
    every fact it makes is attributed to a chunk that was sent, none is dropped."""
    for n in (1, 3):
        [(req, group)] = build_fact_requests("u1", "j1", [chunk(i, words=10) for i in range(n)])
        seen: set[str] = set()
        for seed in range(8):
            data = synthesise(req.schema, f"seed-{seed}", ["alpha", "bravo", "charlie"])
            assert valid(req.answer, data)
            parsed = parse_fact_answer("u1", "j1", data, group)
            assert parsed.facts and parsed.dropped == 0
            assert {f.chunk_id for f in parsed.facts} <= {c.chunk_id for c in group}
            seen |= {f.chunk_id for f in parsed.facts}
        assert seen == {c.chunk_id for c in group}  # spread over the chunks, not all on c1


async def test_facts_through_the_real_sdk_and_fake_server(fake_server):
    from soulprint.services.llm.anthropic_provider import AnthropicClient

    client = AnthropicClient(fast_config(fake_server.url, cache_enabled=False), limiter=fresh_limiter())
    try:
        [(req, group)] = build_fact_requests("u1", "j1", [CONVO[0]])
        res = await client.complete(req)
    finally:
        await client.aclose()
    assert res.ok, res.error
    parsed = parse_fact_answer("u1", "j1", res.answer, group)
    assert parsed.facts and parsed.dropped == 0
    assert all(f.chunk_id == "k1" and f.category in FACT_CATEGORIES for f in parsed.facts)
    sent = fake_server.requests_log[-1]["body"]
    assert sent["tool_choice"] == {"type": "tool", "name": "record_facts"}
    # The long shared system prompt is marked for prompt caching.
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral"}


async def test_every_request_of_a_pass_through_the_fake_yields_attributed_facts(fake_server):
    """A pass of several multi-chunk requests through the fake Messages API: each answer names
    chunks of its own request only, and the pass has facts for its chunks (it used to have none)."""
    from soulprint.services.llm.anthropic_provider import AnthropicClient

    chunks = [chunk(i, words=30) for i in range(12)]
    pairs = build_fact_requests("u1", "j1", chunks, token_budget=300, max_chunks_per_request=4)
    assert len(pairs) > 1 and any(len(g) > 1 for _, g in pairs)
    client = AnthropicClient(fast_config(fake_server.url, cache_enabled=False), limiter=fresh_limiter())
    try:
        results = await client.complete_many([req for req, _ in pairs])
    finally:
        await client.aclose()
    attributed: set[str] = set()
    for (req, group), res in zip(pairs, results):
        assert res.ok, res.error
        parsed = parse_fact_answer("u1", "j1", res.answer, group)
        assert parsed.facts and parsed.dropped == 0
        assert {f.chunk_id for f in parsed.facts} <= {c.chunk_id for c in group}
        attributed |= {f.chunk_id for f in parsed.facts}
    assert len(attributed) > len(pairs)  # more than one chunk per request gets facts
