"""Full text at scale: the planned read ranks as scoring every match would, counted or not.

A person's micro chunks are written straight to Postgres from a vocabulary
of common and rare words (one inflected family, run / runs / running, for the
stems' prefixes; never two of its forms in one chunk, so a prefix term's
document count is the sum of its words'). The expected ranking is computed
here in Python from the same texts: a chunk scores the sum of
ln(1 + N / (1 + df)) over the query's terms it matches. The search must
return the top of that ranking (scores equal position by position; rows tied
at the last level may be any of them), before the reconciler has counted the
import's words (counted per query) and after (search_terms), as the owner and
as the reader under row-level security.
"""

from __future__ import annotations

import math
import random
import uuid
from datetime import timedelta

from soulprint.services.db.search import Filters
from support.chunks import T0, add_person

COMMON = ["kafka", "lisbon", "budget", "coffee", "review", "deploy"]
RARE = ["dagster", "tromso", "violin", "quartz", "marathon"]
FAMILY = ["run", "runs", "running"]
FILLER = [f"filler{i}" for i in range(60)]
QUERIES = ["kafka lisbon", "kafka", "dagster kafka budget", "running a marathon", "violin review coffee deploy",
           "quartz", "nothing matches zebra"]


def _texts(rng: random.Random, n: int) -> list[list[str]]:
    texts = []
    for _ in range(n):
        words = rng.sample(FILLER, 5)
        words += [w for w in COMMON if rng.random() < 0.25] + [w for w in RARE if rng.random() < 0.01]
        if rng.random() < 0.2:
            words.append(rng.choice(FAMILY))
        rng.shuffle(words)
        texts.append(words)
    return texts


async def _person(db, user: str, texts: list[list[str]]) -> tuple[str, list[str]]:
    return await add_person(db, user, [" ".join(words) for words in texts], tokens=8,
                            job={"chunks_micro": len(texts)})


async def _expected(db, query: str, ids: list[str], texts: list[list[str]]) -> dict[str, float]:
    """Each matching chunk's score, from the texts: a term is a word, or a stem's prefix."""
    words = await db.pool.fetch(
        "SELECT w.lexeme AS word, (SELECT string_agg(e.lexeme, ' ') FROM unnest(to_tsvector('english', w.lexeme)) e)"
        " AS stem FROM unnest(to_tsvector('simple', $1)) w", query)
    terms = [(r["word"], r["stem"]) for r in words if r["stem"]]
    has = [set(t) for t in texts]

    def matches(i: int, word: str, stem: str) -> bool:
        return word in has[i] or any(w.startswith(stem) for w in has[i]) if stem != word else word in has[i]

    n = len(texts)
    weights = []
    for word, stem in terms:
        df = sum(matches(i, word, stem) for i in range(n))
        weights.append(math.log(1 + n / (1 + df)))
    scores = {}
    for i in range(n):
        s = sum(w for (word, stem), w in zip(terms, weights) if matches(i, word, stem))
        if s > 0:
            scores[ids[i]] = s
    return scores


async def _check(db, conn, user: str, ids, texts, k: int = 10) -> int:
    """Every query's candidates against the ranking computed here; how many were cut short by the plan."""
    depth = max(4 * k, 50)
    for query in QUERIES:
        result, rankings = await db.search.search(conn, user, query, None, None, k)
        expected = await _expected(db, query, ids, texts)
        best = sorted(expected.values(), reverse=True)[:depth]
        got = [expected.get(c.chunk_id) for c in rankings["full_text"]]
        assert len(got) == len(best) == result.candidates["full_text"], query
        assert [round(s, 6) for s in got] == [round(s, 6) for s in best], query  # position by position
        if best:
            above = {c for c, s in expected.items() if s > best[-1] + 1e-9}
            assert above <= {c.chunk_id for c in rankings["full_text"]}, query  # every row above the last level
    return depth


async def test_the_planned_full_text_ranks_the_top_as_scoring_every_match_would(db):
    tag = uuid.uuid4().hex[:8]
    rng = random.Random(5)
    texts = _texts(rng, 3000)
    user = f"terms-{tag}"
    job, ids = await _person(db, user, texts)
    other_job, _ = await _person(db, f"terms-other-{tag}", _texts(random.Random(6), 800))

    async with db.pool.acquire() as conn:  # counted per query
        await _check(db, conn, user, ids, texts)

    changes = await db.search.count_terms(min_chunks=2000)
    assert job in changes["counted"] and other_job not in changes["counted"]  # only the large import
    assert job not in (await db.search.count_terms(min_chunks=2000))["counted"]  # once
    df = await db.pool.fetchval("SELECT df FROM search_terms WHERE job_id = $1 AND lexeme = 'kafka'", job)
    assert df == sum("kafka" in t for t in texts)
    assert await db.pool.fetchval("SELECT df FROM search_terms WHERE job_id = $1 AND lexeme = ''", job) == 3000

    async with db.pool.acquire() as conn:  # from search_terms
        await _check(db, conn, user, ids, texts)
    async with db.reader.session(user) as conn:  # the same under row-level security
        await _check(db, conn, user, ids, texts)
        result, rankings = await db.search.search(conn, user, "kafka lisbon", None, None, 10,
                                                  Filters(since=T0 + timedelta(hours=2900)))
    # a filter narrower than the plan's estimate: read again at the lowest level, all that exist
    expected = {i for i, t in zip(ids[2900:], texts[2900:]) if {"kafka", "lisbon"} & set(t)}
    assert 0 < len(expected) < 50 and {c.chunk_id for c in rankings["full_text"]} == expected
    async with db.reader.session(f"terms-other-{tag}") as conn:  # the reader sees no other person's counts
        assert await conn.fetchval("SELECT count(*) FROM search_terms WHERE job_id = $1", job) == 0

    await db.pool.execute("UPDATE people SET current_job_id = 'job-gone' WHERE user_id = $1", user)
    assert job in (await db.search.count_terms(min_chunks=2000))["dropped"]
    assert await db.pool.fetchval("SELECT count(*) FROM search_terms WHERE job_id = $1", job) == 0
