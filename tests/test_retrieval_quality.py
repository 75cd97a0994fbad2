"""Retrieval quality on the labelled set, and neighbour expansion, with the real local embedder.

The labelled conversations (tests/fixtures/retrieval/labelled_set.json) are
imported among the shipped sample's, embedded with the default `local` model
(wordllama), and every question is searched. Recall is over the answering
messages, within a fixed token budget: the hits taken in rank order while
their tokens fit, as a prompt would take them. Fusion must beat full text
alone and vectors alone.
"""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from soulprint.domain.retrieval import single
from soulprint.runtime import build_configured_embedder
from soulprint.settings import EmbeddingConfig
from support import labelled
from support.pipeline import import_and_wait

BUDGET = 1000  # tokens of hits a prompt is given
K = 100  # enough fused hits to fill the budget with micro chunks (400 candidates per retriever)


@pytest.fixture(scope="module")
async def imported(runtime, db, tmp_path_factory):
    """(user, embedder) once the sample plus the labelled conversations are imported and embedded."""
    embedder = build_configured_embedder(EmbeddingConfig())  # the default local model
    user = f"labelled-{random.randrange(1 << 30)}"
    # For the whole module: with the session's `hash` embedder back, the reconciler would
    # re-embed this import in that space (a model change) while the queries run.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runtime, "embedder", embedder)
        job = await import_and_wait(runtime, user, labelled.write_export(tmp_path_factory.mktemp("labelled")))
        assert job.status == "complete" and job.embedding_status == "complete"
        yield user, embedder


def _within_budget(hits, budget: int) -> set[str]:
    """The messages of the hits that fit in ``budget`` tokens, taken in rank order."""
    found, used = set(), 0
    for h in hits:
        if used + h.tokens > budget:
            break
        used += h.tokens
        found.update(h.message_ids)
    return found


async def test_fusion_beats_each_retriever_on_recall_of_the_answering_messages(imported, db, capsys):
    user, embedder = imported
    queries = labelled.load()["queries"]
    assert len(queries) >= 30 and {q["kind"] for q in queries} >= {"paraphrase", "name", "date", "multi_hop"}
    recall: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for q in queries:
        vector = (await embedder.embed([q["query"]], "query"))[0]
        async with db.pool.acquire() as conn:
            result, rankings = await db.search.search(conn, user, q["query"], vector, embedder.space, K)
        answers = set(q["messages"])
        for name, hits in (("fusion", result.hits), ("full_text", single("full_text", rankings, K)),
                           ("vector", single("vector", rankings, K))):
            r = len(answers & _within_budget(hits, BUDGET)) / len(answers)
            recall[name]["all"].append(r)
            recall[name][q["kind"]].append(r)
    mean = {name: {kind: round(sum(v) / len(v), 3) for kind, v in kinds.items()} for name, kinds in recall.items()}
    with capsys.disabled():
        print(f"\nrecall of answering messages within {BUDGET} tokens, {len(queries)} queries:")
        for name, kinds in mean.items():
            print(f"  {name:9} " + "  ".join(f"{kind} {v}" for kind, v in sorted(kinds.items())))
    assert mean["fusion"]["all"] > mean["full_text"]["all"]
    assert mean["fusion"]["all"] > mean["vector"]["all"]


async def test_expansion_adds_neighbouring_messages_within_the_budget(imported, db):
    user, embedder = imported
    query = "What breed is the dog of the colleague who moved to Tromsø?"
    vector = (await embedder.embed([query], "query"))[0]
    async with db.pool.acquire() as conn:
        plain, _ = await db.search.search(conn, user, query, vector, embedder.space, 5)
        widened, _ = await db.search.search(conn, user, query, vector, embedder.space, 5, expand_tokens=600)
        tight, _ = await db.search.search(conn, user, query, vector, embedder.space, 5, expand_tokens=1)
    assert [h.chunk_id for h in widened.hits] == [h.chunk_id for h in plain.hits]  # the same hits, widened
    assert plain.tokens < widened.tokens <= 600
    assert widened.to_json()["stats"]["expand_tokens"] == 600
    for h, out in zip(widened.hits, widened.to_json()["hits"]):
        assert set(h.message_ids) <= set(h.context.message_ids) and h.text in h.context.text
        assert out["context"]["added_message_ids"] == [m for m in h.context.message_ids if m not in h.message_ids]
        assert out["text"] == h.text and out["tokens"] == h.tokens  # the hit keeps its own fields
    assert sum(h.context.added_tokens for h in widened.hits) > 0
    # a budget below the hits' own tokens adds nothing and drops nothing
    assert [h.chunk_id for h in tight.hits] == [h.chunk_id for h in plain.hits]
    assert all(h.context.added_tokens == 0 for h in tight.hits)
    assert "context" not in plain.to_json()["hits"][0]


async def test_a_context_holds_the_adjacent_messages_of_its_conversation(imported, db):
    user, embedder = imported
    query = "Pixel is allergic to chicken"
    vector = (await embedder.embed([query], "query"))[0]
    async with db.pool.acquire() as conn:
        result, _ = await db.search.search(conn, user, query, vector, embedder.space, 1, expand_tokens=400)
    [hit] = result.hits
    assert hit.message_ids == ["pixel-5"]
    ids = hit.context.message_ids
    assert "pixel-4" in ids and "pixel-6" in ids  # before and after, in conversation order
    assert ids == sorted(ids, key=lambda m: int(m.split("-")[1]))
    assert all(m.startswith("pixel-") for m in ids)  # never another conversation's
