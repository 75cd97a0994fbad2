"""Hybrid search in Postgres: one person's rows only, and fusion at least as good as either side.

On the session stack (the `hash` embedder of tests/conftest.py, plus one run
with the default local model for the relevance numbers).
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone
from pathlib import Path

import pytest

from soulprint.domain.retrieval import Candidate, expand, fuse, single, tsquery_text
from soulprint.runtime import build_configured_embedder
from soulprint.services.db.search import Filters
from soulprint.settings import EmbeddingConfig
from support.pipeline import import_and_wait

REPO = Path(__file__).resolve().parents[1]
EXPORT = REPO / "tests" / "fixtures" / "exports" / "chatgpt_classic"
SAMPLE = REPO / "samples" / "sample-export.zip"
QUERIES = json.loads((REPO / "tests" / "fixtures" / "retrieval" / "sample_queries.json").read_text())["queries"]


# -- pure ------------------------------------------------------------------------------

def _c(chunk_id: str) -> Candidate:
    return Candidate(chunk_id, "conv", None, ["m"], "micro", None, 3, "text")


def test_fusion_ranks_by_reciprocal_rank_and_keeps_each_rank():
    hits = fuse({"full_text": [_c("a"), _c("b"), _c("c")], "vector": [_c("c"), _c("d")]}, k=3)
    assert [h.chunk_id for h in hits] == ["c", "a", "b"]  # c is in both lists
    assert hits[0].ranks == {"full_text": 3, "vector": 1} and hits[1].ranks == {"full_text": 1, "vector": None}
    assert hits[0].score == pytest.approx(1 / 63 + 1 / 61)
    assert [h.chunk_id for h in single("vector", {"full_text": [], "vector": [_c("d")]}, 5)] == ["d"]


def test_the_full_text_query_ors_words_with_their_english_stem_and_drops_stop_words():
    assert tsquery_text([("where", None), ("moving", "move"), ("lisbon", "lisbon"), ("o'hara", "o'hara")]) \
        == "('moving' | 'move':*) | 'lisbon' | 'o''hara'"
    assert tsquery_text([("the", None)]) == ""


def _m(i: int, tokens: int = 10) -> Candidate:
    return Candidate(f"k{i}", "conv", None, [f"m{i}"], "micro", None, tokens, f"t{i}", i)


def test_expansion_widens_hits_in_rank_order_within_the_budget_and_never_shows_a_chunk_twice():
    a, b = fuse({"full_text": [_m(5), _m(8)]}, 2)  # two hits of one thread, three chunks apart
    near = {"k5": ([_m(4), _m(3)], [_m(6), _m(7), _m(8)]), "k8": ([_m(7), _m(6)], [_m(9, 50)])}
    wa, wb = expand([a, b], near, budget=60)
    # rounds: a takes m4, b m7; a m6, b's m9 (50 tokens) does not fit and m6 is a's; a m3: 60 used
    assert wa.context.message_ids == ["m3", "m4", "m5", "m6"] and wa.context.added_tokens == 30
    assert wb.context.message_ids == ["m7", "m8"]
    assert wa.context.text == "t3\nt4\nt5\nt6" and wa.context.added_message_ids == ["m3", "m4", "m6"]
    assert sum(h.total_tokens for h in (wa, wb)) == 60
    [alone] = expand([a], near, budget=5)  # below the hit's own tokens: nothing added, nothing dropped
    assert alone.context.tokens == 10 and alone.context.added_message_ids == []


# -- on the stack -----------------------------------------------------------------------

async def _owner_of(db, chunk_ids: list[str]) -> set[str]:
    rows = await db.pool.fetch("SELECT DISTINCT user_id FROM conversation_chunks WHERE chunk_id = ANY($1::uuid[])",
                               chunk_ids)
    return {r["user_id"] for r in rows}


async def test_a_search_never_returns_another_persons_rows(runtime, db):
    alice, bob = (f"iso-{who}-{random.randrange(1 << 30)}" for who in ("alice", "bob"))
    for person in (alice, bob):  # the same export: the same text and conversation ids for both
        assert (await import_and_wait(runtime, person, EXPORT)).status == "complete"
    embedder = runtime.embedder
    words = [w for r in await db.pool.fetch("SELECT content FROM conversation_chunks WHERE user_id = $1", bob)
             for w in r["content"].split()]
    conversations = [r["conversation_id"] for r in await db.pool.fetch(
        "SELECT conversation_id FROM conversations WHERE user_id = $1", bob)]
    rng = random.Random(7)
    answered = 0
    for _ in range(20):
        query = " ".join(rng.sample(words, 3))
        vector = (await embedder.embed([query], "query"))[0]
        filters = rng.choice([Filters(), Filters(tiers=["micro"]), Filters(conversation_ids=conversations),
                              Filters(since=datetime(2000, 1, 1, tzinfo=timezone.utc)),
                              Filters(tiers=["medium", "macro"], conversation_ids=conversations[:1])])
        for person in (alice, bob):
            async with db.pool.acquire() as conn:
                result, rankings = await db.search.search(conn, person, query, vector, embedder.space, 20, filters)
            ids = [h.chunk_id for h in result.hits] + [c.chunk_id for cs in rankings.values() for c in cs]
            assert await _owner_of(db, ids) <= {person}, (query, filters)
            answered += bool(result.hits)
    assert answered >= 20  # most searches find something: the check above is not vacuous
    async with db.pool.acquire() as conn:
        nobody, _ = await db.search.search(conn, "nobody-at-all", "lisbon", vector, embedder.space, 5)
    assert nobody.hits == [] and nobody.fewer_than_k and nobody.notes == ["nobody-at-all has no complete import"]


def _recall_at(hits, answers: set[str], n: int) -> bool:
    seen: list[str] = []
    for h in hits:
        if h.conversation_id not in seen:
            seen.append(h.conversation_id)
    return bool(answers & set(seen[:n]))


async def test_fusion_recalls_at_least_as_much_as_either_retriever(runtime, db, user_id, monkeypatch, capsys):
    """recall@5 over conversations (in the order of their first hit) on the labelled queries that the
    shipped sample answers; 20 fused hits from 80 candidates of each retriever."""
    embedder = build_configured_embedder(EmbeddingConfig())  # the default local model
    monkeypatch.setattr(runtime, "embedder", embedder)
    job = await import_and_wait(runtime, user_id, SAMPLE)
    assert job.embedding_status == "complete"
    present = {r["conversation_id"] for r in await db.pool.fetch(
        "SELECT conversation_id FROM conversations WHERE job_id = $1", job.job_id)}
    queries = [q for q in QUERIES if present & set(q["conversations"])]
    assert len(queries) >= 30
    found = {"full_text": 0, "vector": 0, "fusion": 0}
    for q in queries:
        vector = (await embedder.embed([q["query"]], "query"))[0]
        async with db.pool.acquire() as conn:
            result, rankings = await db.search.search(conn, user_id, q["query"], vector, embedder.space, 20)
        answers = set(q["conversations"])
        found["fusion"] += _recall_at(result.hits, answers, 5)
        for name in ("full_text", "vector"):
            found[name] += _recall_at(single(name, rankings, len(rankings[name])), answers, 5)
    recall = {name: round(n / len(queries), 3) for name, n in found.items()}
    with capsys.disabled():
        print(f"\nrecall@5 over {len(queries)} queries: {recall}")
    assert recall["fusion"] >= recall["full_text"] and recall["fusion"] >= recall["vector"]


def _matches(query: str, present: set[str]) -> bool:
    """Evaluate a plan's tsquery (single-letter lexemes, & and |) for a row holding ``present``."""
    expr = query.replace("&", " and ").replace("|", " or ")
    for lexeme in "abcde":
        expr = expr.replace(f"'{lexeme}'", str(lexeme in present))
    return eval(expr)  # noqa: S307 - built above from a fixed alphabet


def test_the_full_text_plan_reads_exactly_the_rows_reaching_a_score_threshold():
    from itertools import combinations

    from soulprint.domain.retrieval import idf, plan_full_text

    n, terms = 100_000, [("'a'", 844), ("'b'", 3612), ("'c'", 679), ("'d'", 20)]
    weight = {t[1]: idf(n, df) for t, df in terms}
    rows = [set(s) for r in range(1, 5) for s in combinations("abcd", r)]  # a row per set of terms it holds
    for lowest in (False, True):
        plan = plan_full_text(terms, n, 50, lowest=lowest, cap=10_000)  # uncapped: a pure threshold
        read = [r for r in rows if _matches(plan.at, r)]
        left = [r for r in rows if r not in read]
        # a threshold: every row read outscores every row left out
        assert min(sum(weight[t] for t in r) for r in read) > max((sum(weight[t] for t in r) for r in left), default=0)
        assert plan.estimated >= 100 and plan.cap is None
        assert plan.complete == lowest and (left == []) == lowest  # rows of common words alone are left out


def test_a_common_words_plan_reads_all_above_its_tied_level_and_a_bounded_sample_of_it():
    from soulprint.domain.retrieval import SAMPLE_CAP, plan_full_text

    plan = plan_full_text([("'a'", 2000), ("'b'", 1500), ("'c'", 0)], 100_000, 50)
    assert plan.terms == ["'a'", "'b'"]  # a word no chunk has is no term
    assert plan.above == "('b' & 'a')" and plan.at == "('b')" and plan.cap == SAMPLE_CAP
    assert plan_full_text([("'a'", 0)], 100, 50) is None


def test_a_stems_prefix_is_spelled_out_from_the_imports_vocabulary():
    from soulprint.domain.retrieval import PREFIX_LEXEMES, vocabulary_term

    assert vocabulary_term("running", "run", ["run", "runs", "running"]) == "('run' | 'running' | 'runs')"
    assert vocabulary_term("runs", "run", ["run", "running"]) == "('run' | 'running')"  # "runs" is not in the import
    assert vocabulary_term("coded", "code", ["code"]) == vocabulary_term("code", "code", ["code"]) == "'code'"
    assert vocabulary_term("zebra", "zebra", []) == "'zebra'"  # no such word: a term that matches nothing
    assert vocabulary_term("the", None, []) is None  # a stop word
    many = [f"run{i}" for i in range(PREFIX_LEXEMES + 1)]
    assert vocabulary_term("running", "run", many) == "('running' | 'run':*)"
