"""Hybrid search over one person's current import: full text, vectors, fusion; and fact search.

Every query runs on the connection it is given (the caller's read-only
session, where row-level security shows one person's rows) and is scoped in
SQL as well: ``user_id = $1`` and ``job_id =`` the person's current import
(people.current_job_id), so no filter can reach another person's rows even
on an owner connection.

The vector side has two paths:

* exact, for an import without an HNSW index: ``ORDER BY embedding <=> $q``
  (no cast) reads the person's vectors by the key's job_id prefix and sorts
  them. Exact, and fast for a small scope.
* HNSW, for an import with ``HNSW_MIN_VECTORS`` or more vectors in the space:
  its own partial index (``maintain_indexes``, built once its embedding is
  complete; migration 0012 says why one per import and not one per space),
  with ``hnsw.iterative_scan = relaxed_order`` so that a tier or time filter
  does not cut the scan short, and the candidates re-sorted by exact
  distance. If it still comes up short (a narrow filter,
  ``hnsw.max_scan_tuples`` reached) the exact path answers instead, so a
  filtered search never silently returns fewer than exist. A conversation
  filter always goes exact: its scope is a few conversations.

Ranking, fusion and neighbour expansion are domain/retrieval.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import AsyncContextManager, Callable, Sequence

import asyncpg
import orjson

from soulprint.domain.chunking import chunk_id
from soulprint.domain.retrieval import (PREFIX_LEXEMES, Candidate, FactHit, FullTextPlan, SearchResult, expand, fuse,
                                        plan_full_text, tsquery_terms, vocabulary_term)
from soulprint.models.embedding import EmbeddingSpace
from soulprint.services.db.pool import quote_literal, set_local

# An import with this many vectors in a space gets its HNSW index (bench/README.md,
# "Retrieval quality": exact costs ~linear in the person's vectors, the index ~flat).
HNSW_MIN_VECTORS = 10_000
# An import with this many micro chunks gets its words counted once (search_terms, migration
# 0022) instead of per query: counting a common word costs ~15 ms at 100,000 chunks.
TERMS_MIN_CHUNKS = 10_000
# The index scan keeps this many candidates per search at least (ef_search), reads at
# most this many tuples (filtered-out ones included) before giving up to exact.
# The graph's build parameters with it: on one person's 100,000 wordllama vectors
# (bench/search_bench.py), pgvector's defaults (m 16, ef_construction 64) found
# 0.877 of the exact top 10 at ef_search 200 and 0.98 at 1000, questions far from
# every chunk being the misses; m 24 / ef_construction 200 found 0.97 at 400 (200 questions;
# 0.996 over the first 50) and 0.997 at 600, for ~4 ms more a search.
HNSW_EF_SEARCH = 600
HNSW_GRAPH = "m = 24, ef_construction = 200"
HNSW_MAX_SCAN_TUPLES = 200_000
# Memory for one index build: 100,000 vectors of 256 dimensions take ~150 MB as a graph.
HNSW_BUILD_MEMORY = "1GB"
INDEX_PREFIX = "search_hnsw_"
# A hit widens by at most this many micro chunks on each side (what one query fetches).
NEIGHBOURS_PER_SIDE = 32


# Opens another reader session of the same person with more settings of its own
# (services/db/access.Reader.spare).
Spare = Callable[[dict[str, str]], AsyncContextManager[asyncpg.Connection]]


@dataclass(frozen=True)
class Filters:
    tiers: Sequence[str] | None = None  # None: every tier
    since: datetime | None = None  # on the chunk's newest message
    until: datetime | None = None
    conversation_ids: Sequence[str] | None = None


# $1 user, $2 job, $3 tiers, $4 since, $5 until, $6 conversations; the retriever's own from $7.
# The job is the person's (``_current`` reads it by user), so ``job_id`` alone scopes the rows;
# the user test stays as a second guard but is written so that no index answers it: as a plain
# ``user_id = $1`` the planner AND-ed the full-text bitmap with a bitmap of all 100,000 of a
# large person's chunks from the user index (4 ms of a 10 ms query), taking the two tests for
# independent when the job decides the person.
_SCOPE = """(k.user_id = $1) IS TRUE AND k.job_id = $2
   AND ($3::text[] IS NULL OR k.tier = ANY($3::text[]))
   AND ($4::timestamptz IS NULL OR k.message_at >= $4)
   AND ($5::timestamptz IS NULL OR k.message_at < $5)
   AND ($6::text[] IS NULL OR k.conversation_id = ANY($6::text[]))"""

_COLUMNS = """k.chunk_id::text AS chunk_id, k.conversation_id, k.conversation_title, k.message_ids, k.tier,
       k.message_at, k.token_count, k.content, k.chunk_index"""

# Ties within a retriever: the newer chunk, then conversation and position.
_TIES = "k.message_at DESC NULLS LAST, k.conversation_id, k.tier, k.chunk_index"


def _candidate(r: asyncpg.Record) -> Candidate:
    return Candidate(r["chunk_id"], r["conversation_id"], r["conversation_title"], list(r["message_ids"]),
                     r["tier"], r["message_at"], r["token_count"], r["content"], r["chunk_index"])


_WORDS = ("SELECT w.lexeme AS word, (SELECT string_agg(e.lexeme, ' ') FROM unnest(to_tsvector('english', w.lexeme))"
          " AS e) AS stem FROM unnest(to_tsvector('simple', $1)) AS w")


async def _tsquery(conn: asyncpg.Connection, query: str) -> list[str]:
    """The query's terms: its `simple` words OR'd with their English stems (domain.retrieval)."""
    return tsquery_terms([(r["word"], r["stem"]) for r in await conn.fetch(_WORDS, query)])


async def _term_frequencies(conn: asyncpg.Connection, user_id: str, job_id: str,
                            query: str) -> tuple[list[tuple[str, int]], int]:
    """The query's terms with their document frequencies among the import's micro chunks, and
    how many micro chunks it has.

    From ``search_terms`` when the reconciler has counted the import's words (one indexed
    read: a term counts the documents of each word of the import it covers, a chunk with
    two of them twice); else counted here, by the GIN index, term by term (cheap for a small
    import, ~15 ms a common word for a large one).
    """
    rows = await conn.fetch(
        f"""
        WITH w AS ({_WORDS})
        SELECT w.word, w.stem, n.df AS n, v.df, v.lexemes
          FROM w LEFT JOIN search_terms n ON n.job_id = $2 AND n.lexeme = ''
          LEFT JOIN LATERAL (
                SELECT sum(t.df) AS df, (array_agg(t.lexeme ORDER BY t.df DESC))[1:{PREFIX_LEXEMES + 1}] AS lexemes
                  FROM (SELECT t.lexeme, t.df FROM search_terms t WHERE t.job_id = $2 AND t.lexeme = w.word
                         UNION
                        SELECT t.lexeme, t.df FROM search_terms t WHERE t.job_id = $2 AND w.stem <> w.word
                           AND t.lexeme >= w.stem AND t.lexeme < w.stem || chr(1114111)) AS t) AS v ON true
        """,
        query, job_id,
    )
    if not rows or rows[0]["n"] is None:
        terms = tsquery_terms([(r["word"], r["stem"]) for r in rows])
        counted = await conn.fetch(
            "SELECT (SELECT j.chunks_micro FROM import_jobs j WHERE j.job_id = $2) AS n, x AS term,"
            " (SELECT count(*) FROM conversation_chunks c WHERE c.user_id = $1 AND c.job_id = $2"
            "   AND c.content_tsv @@ to_tsquery('simple', x)) AS df FROM unnest($3::text[]) AS x",
            user_id, job_id, terms,
        )
        return [(r["term"], r["df"]) for r in counted], (counted[0]["n"] if counted else 0)
    n = rows[0]["n"]
    by_term: dict[str, int] = {}
    for r in rows:
        term = vocabulary_term(r["word"], r["stem"], r["lexemes"] or ())
        if term is not None:  # None: a stop word
            by_term[term] = min(n, int(r["df"] or 0))
    return list(by_term.items()), n


async def _current(conn: asyncpg.Connection, user_id: str, space_id: str | None = None) -> asyncpg.Record | None:
    """The person's current import, and the HNSW index of it in ``space_id`` if it has one."""
    return await conn.fetchrow(
        "SELECT p.current_job_id AS job_id, j.embedding_model, j.embedded, j.embedding_total, s.index_name"
        " FROM people p JOIN import_jobs j ON j.job_id = p.current_job_id"
        " LEFT JOIN search_indexes s ON s.job_id = p.current_job_id AND s.space = $2"
        " WHERE p.user_id = $1 AND j.user_id = $1",
        user_id, space_id,
    )


def _scope(user_id: str, job_id: str, filters: Filters) -> tuple:
    return (user_id, job_id, list(filters.tiers) if filters.tiers else None, filters.since, filters.until,
            list(filters.conversation_ids) if filters.conversation_ids else None)


def _no_import(user_id: str, k: int, expand_tokens: int | None) -> tuple[SearchResult, dict[str, list[Candidate]]]:
    return (SearchResult([], k, {"full_text": 0, "vector": 0}, None, None, [f"{user_id} has no complete import"],
                         expand_tokens=expand_tokens), {"full_text": [], "vector": []})


def _hnsw_settings(depth: int) -> dict[str, str]:
    """The settings of an HNSW search for ``depth`` candidates. enable_sort off: the index's
    order instead of reading and sorting every vector of the person (stale statistics made
    Postgres sort 100,000 rows for 1.4 s instead). The exact path's sort has no alternative plan,
    so it sorts all the same."""
    return {"enable_sort": "off", "hnsw.iterative_scan": "relaxed_order",
            "hnsw.ef_search": str(max(HNSW_EF_SEARCH, min(2 * depth, 1000))),
            "hnsw.max_scan_tuples": str(HNSW_MAX_SCAN_TUPLES)}


def index_name(job_id: str, space_id: str) -> str:
    return INDEX_PREFIX + hashlib.sha256(f"{job_id}\x1f{space_id}".encode()).hexdigest()[:24]


class Search:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool  # the owner's, for maintain_indexes; every search runs on the caller's connection

    async def search(self, conn: asyncpg.Connection, user_id: str, query: str,
                     query_vector: Sequence[float] | None, space: EmbeddingSpace | None, k: int,
                     filters: Filters = Filters(), *, expand_tokens: int | None = None,
                     depth: int | None = None, exact: bool = False,
                     spare: Spare | None = None) -> tuple[SearchResult, dict[str, list[Candidate]]]:
        """The fused top ``k`` and each retriever's candidates (``depth`` each, default 4k, at least 50).

        ``spare``: a second session of the same person (``Reader.spare``), on which the vector
        retriever runs while full text runs on ``conn``: the search then takes as long as the
        slower of the two instead of both (bench/README.md, "Search at scale").

        ``expand_tokens``: widen the hits with neighbouring micro chunks of their conversation
        while the hits' total tokens stay within it (domain.retrieval.expand). ``exact``: the
        exact vector path even where an index exists (what the benchmark checks the index against).
        """
        depth = depth or max(4 * k, 50)
        space_id = space.space_id if space else None
        both = None
        if spare is not None:
            both = await self._side_by_side(conn, spare, user_id, query, query_vector, space, depth, filters, exact)
        if both is not None:
            job, full_text, (vector, path), notes = both
        else:  # one retriever after the other on conn
            job = await _current(conn, user_id, space_id)
            if job is None:
                return _no_import(user_id, k, expand_tokens)
            scope, notes = _scope(user_id, job["job_id"], filters), []
            full_text = await self._full_text(conn, scope, query, depth, notes)
            vector, path = await self._vector(conn, job, scope, query_vector, space, depth, notes, exact)
        job_id = job["job_id"]
        rankings = {"full_text": full_text, "vector": vector}
        hits = fuse(rankings, k)
        if expand_tokens is not None:
            hits = expand(hits, await self._neighbours(conn, user_id, job_id, hits), expand_tokens)
        result = SearchResult(hits, k, {n: len(c) for n, c in rankings.items()}, job_id, space_id, notes, path,
                              expand_tokens)
        return result, rankings

    async def _side_by_side(self, conn, spare: Spare, user_id: str, query: str, query_vector, space, depth: int,
                            filters: Filters, exact: bool):
        """Full text on ``conn`` and vectors on a session of their own, each reading the person's
        current import itself so that neither waits for the other: (job, full text, (vector,
        path), notes). None when the two reads disagree (an import completing that instant) or
        find no complete import: the caller then searches one retriever after the other on
        ``conn``, so both retrievers always search one import."""
        vector_notes: list[str] = []

        async def vector():
            # The session that runs only the vector retriever holds its index settings throughout.
            async with spare(_hnsw_settings(depth)) as other:
                job = await _current(other, user_id, space.space_id if space else None)
                if job is None:
                    return None, ([], None)
                found = await self._vector(other, job, _scope(user_id, job["job_id"], filters), query_vector, space,
                                           depth, vector_notes, exact, configured=True)
                return job["job_id"], found

        notes: list[str] = []
        async with asyncio.TaskGroup() as both:  # one failing cancels the other
            beside = both.create_task(vector())
            job = await _current(conn, user_id)
            full_text = [] if job is None else await self._full_text(conn, _scope(user_id, job["job_id"], filters),
                                                                     query, depth, notes)
        vector_job, found = beside.result()
        if job is None or vector_job != job["job_id"]:
            return None
        return job, full_text, found, notes + vector_notes  # the order the sequential search gives them

    async def _full_text(self, conn, scope: tuple, query: str, depth: int, notes: list[str]) -> list[Candidate]:
        """The best ``depth`` micro chunks by idf-weighted full text, reading only the rows that
        can rank there (domain.retrieval.plan_full_text); a second read only if the plan's
        estimate proved too high for the scope."""
        terms, n = await _term_frequencies(conn, scope[0], scope[1], query)
        if not terms:
            notes.append("full text: the query has no searchable word")
            return []
        plan = plan_full_text(terms, n, depth)
        if plan is None:
            return []  # no chunk of the import has any word of the query
        rows = await self._read_full_text(conn, scope, plan, depth)
        if len(rows) < depth and not plan.complete:
            plan = plan_full_text(terms, n, depth, lowest=True)
            rows = await self._read_full_text(conn, scope, plan, depth)
        return rows

    async def _read_full_text(self, conn, scope: tuple, plan: FullTextPlan, depth: int) -> list[Candidate]:
        # $7 the terms, $8 their idfs, $9 all terms OR'd (ts_rank_cd's), $10 the threshold's rows;
        # capped: $11 how many of them, and $12 the rows above the threshold, read in full.
        matching = f"SELECT k.* FROM conversation_chunks k WHERE {_SCOPE} AND k.content_tsv @@ to_tsquery('simple', $10)"
        args: list = [plan.terms, plan.idfs, plan.ranked, plan.at]
        if plan.cap is None:
            rows = matching
        elif plan.above is None:
            rows, args = f"{matching} LIMIT $11", [*args, plan.cap]
        else:
            above = f"SELECT k.* FROM conversation_chunks k WHERE {_SCOPE} AND k.content_tsv @@ to_tsquery('simple', $12)"
            rows = f"{above} UNION ALL ({matching} AND NOT (k.content_tsv @@ to_tsquery('simple', $12)) LIMIT $11)"
            args = [*args, plan.cap, plan.above]
        found = await conn.fetch(
            f"""
            WITH t AS MATERIALIZED (
                SELECT to_tsquery('simple', x) AS q, w AS idf FROM unnest($7::text[], $8::float8[]) AS u(x, w))
            SELECT {_COLUMNS},
                   (SELECT sum(t.idf) FROM t WHERE k.content_tsv @@ t.q) AS score,
                   ts_rank_cd(k.content_tsv, to_tsquery('simple', $9)) AS rank
              FROM ({rows}) AS k
             ORDER BY score DESC, rank DESC, {_TIES}
             LIMIT {int(depth)}
            """,
            *scope, *args,
        )
        return [_candidate(r) for r in found]

    async def _vector(self, conn, job: asyncpg.Record, scope: tuple, query_vector: Sequence[float] | None,
                      space: EmbeddingSpace | None, depth: int, notes: list[str],
                      exact: bool, configured: bool = False) -> tuple[list[Candidate], str | None]:
        if query_vector is None or space is None:
            notes.append("vector: no query embedding")
            return [], None
        literal = orjson.dumps(list(query_vector)).decode()
        if (job["embedding_model"] == space.space_id and job["embedding_total"] is not None
                and job["embedded"] < job["embedding_total"]):
            notes.append(f"vector: {job['embedded']} of {job['embedding_total']} chunks embedded so far")
        if job["index_name"] is not None and scope[5] is None and not exact:
            rows = await self._vector_hnsw(conn, scope, literal, space, depth, configured)
            if len(rows) == depth:
                return rows, "hnsw"
            path = "exact after hnsw"
        else:
            path = "exact"
        rows = await self._vector_exact(conn, scope, literal, space, depth)
        if not rows:
            notes.append(f"vector: the current import has no vectors of {space.space_id} in this scope")
        return rows, path

    async def _vector_exact(self, conn, scope: tuple, literal: str, space: EmbeddingSpace,
                            depth: int) -> list[Candidate]:
        rows = await conn.fetch(
            f"""
            SELECT {_COLUMNS}
              FROM chunk_embeddings e
              JOIN conversation_chunks k ON k.job_id = e.job_id AND k.chunk_id = e.chunk_id
             WHERE {_SCOPE} AND e.job_id = $2 AND e.model = $7
             ORDER BY e.embedding <=> $8::vector, {_TIES}
             LIMIT $9
            """,
            *scope, space.space_id, literal, depth,
        )
        return [_candidate(r) for r in rows]

    async def _vector_hnsw(self, conn, scope: tuple, literal: str, space: EmbeddingSpace,
                           depth: int, configured: bool) -> list[Candidate]:
        """The index scan (its cast; the job and model as literals, so that the planner proves
        the partial index's predicate), then an exact re-sort of what it found.

        ``configured``: ``conn``'s session already has ``_hnsw_settings`` (a session of its own
        for this retriever); else they are set here, to the end of the caller's transaction (of
        the reader session's, the rest of it is what follows the vector retriever: neighbours,
        which do not sort) or of one opened for this query when there is none."""
        n = int(space.dimensions)
        async with contextlib.AsyncExitStack() as held:
            if not configured:
                if not conn.is_in_transaction():
                    await held.enter_async_context(conn.transaction())
                await conn.execute(set_local(_hnsw_settings(depth)))
            rows = await conn.fetch(
                f"""
                SELECT * FROM (
                    SELECT {_COLUMNS}, e.embedding::vector({n}) <=> $7::vector({n}) AS distance
                      FROM chunk_embeddings e
                      JOIN conversation_chunks k ON k.job_id = e.job_id AND k.chunk_id = e.chunk_id
                     WHERE {_SCOPE} AND e.job_id = {quote_literal(scope[1])}
                       AND e.model = {quote_literal(space.space_id)}
                     ORDER BY e.embedding::vector({n}) <=> $7::vector({n})
                     LIMIT $8
                ) k
                ORDER BY k.distance, {_TIES}
                """,
                *scope, literal, depth,
            )
        return [_candidate(r) for r in rows]

    async def _neighbours(self, conn, user_id: str, job_id: str,
                          hits: Sequence) -> dict[str, tuple[list[Candidate], list[Candidate]]]:
        """Per micro hit, the micro chunks before and after it (nearest first), by their derived ids.

        Medium and macro hits are passages of their own and get none.
        """
        wanted: dict[str, tuple[str, int, int]] = {}  # neighbour id -> (hit, side, distance)
        for h in hits:
            if h.tier != "micro":
                continue
            for d in range(1, NEIGHBOURS_PER_SIDE + 1):
                for side, index in ((0, h.chunk_index - d), (1, h.chunk_index + d)):
                    if index >= 0:
                        wanted[chunk_id(user_id, h.conversation_id, "micro", index)] = (h.chunk_id, side, d)
        if not wanted:
            return {}
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM conversation_chunks k"
            " WHERE k.user_id = $1 AND k.job_id = $2 AND k.chunk_id = ANY($3::uuid[])",
            user_id, job_id, list(wanted),
        )
        found: dict[str, tuple[list[Candidate], list[Candidate]]] = {}
        for r in sorted(rows, key=lambda r: wanted[r["chunk_id"]][2]):  # micro indices have no gaps
            hit, side, _ = wanted[r["chunk_id"]]
            found.setdefault(hit, ([], []))[side].append(_candidate(r))
        return found

    async def maintain_indexes(self, space: EmbeddingSpace, min_vectors: int = HNSW_MIN_VECTORS) -> dict[str, list]:
        """Build the HNSW index of every current import complete in ``space`` with at least
        ``min_vectors`` vectors, and drop those of imports no longer current or of a space the
        import left. Idempotent; CONCURRENTLY, so the embedding stage's writes never wait on a
        build. Runs as the owner (the reconciler's pass, one worker at a time)."""
        stale = await self.pool.fetch(
            "SELECT s.job_id, s.space, s.index_name FROM search_indexes s"
            " LEFT JOIN people p ON p.current_job_id = s.job_id LEFT JOIN import_jobs j ON j.job_id = s.job_id"
            " WHERE p.user_id IS NULL OR j.embedding_model IS DISTINCT FROM s.space"
        )
        for r in stale:
            await self.pool.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{r["index_name"]}"')
            await self.pool.execute("DELETE FROM search_indexes WHERE job_id = $1 AND space = $2", r["job_id"], r["space"])
        due = [] if space.dimensions > 2000 else await self.pool.fetch(  # HNSW's limit
            "SELECT j.job_id, j.embedded FROM people p JOIN import_jobs j ON j.job_id = p.current_job_id"
            " WHERE j.embedding_model = $1 AND j.embedding_status = 'complete' AND j.embedded >= $2"
            " AND NOT EXISTS (SELECT 1 FROM search_indexes s WHERE s.job_id = j.job_id AND s.space = $1)",
            space.space_id, min_vectors,
        )
        await self.count_terms()
        built = []
        for r in due:
            name = index_name(r["job_id"], space.space_id)
            async with self.pool.acquire() as conn:
                await conn.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')  # an earlier build cut short
                # The graph must fit in maintenance_work_mem or the build slows many times over
                # (pgvector says so in the log); set for this build alone.
                await conn.execute(f"SET maintenance_work_mem = '{HNSW_BUILD_MEMORY}'")
                try:
                    await conn.execute(
                        f'CREATE INDEX CONCURRENTLY "{name}" ON chunk_embeddings USING hnsw'
                        f" ((embedding::vector({int(space.dimensions)})) vector_cosine_ops) WITH ({HNSW_GRAPH})"
                        f" WHERE job_id = {quote_literal(r['job_id'])} AND model = {quote_literal(space.space_id)}"
                    )
                finally:
                    await conn.execute("RESET maintenance_work_mem")
            await self.pool.execute(
                "INSERT INTO search_indexes (job_id, space, index_name, vectors) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (job_id, space) DO NOTHING",
                r["job_id"], space.space_id, name, r["embedded"],
            )
            built.append(r["job_id"])
        return {"built": built, "dropped": [r["job_id"] for r in stale]}

    async def count_terms(self, min_chunks: int = TERMS_MIN_CHUNKS) -> dict[str, list]:
        """Count the words of every current import with at least ``min_chunks`` micro chunks once
        (ts_stat: its micro chunks per lexeme), and drop the counts of imports no longer current.
        A current import's chunks never change, so the counts stay true while it is current.
        Idempotent: an import's counts are written in one statement, marked by the '' row."""
        stale = [r["job_id"] for r in await self.pool.fetch(
            "SELECT t.job_id FROM search_terms t WHERE t.lexeme = ''"
            " AND NOT EXISTS (SELECT 1 FROM people p WHERE p.current_job_id = t.job_id)")]
        if stale:
            await self.pool.execute("DELETE FROM search_terms WHERE job_id = ANY($1::text[])", stale)
        due = await self.pool.fetch(
            "SELECT j.job_id, j.user_id FROM people p JOIN import_jobs j ON j.job_id = p.current_job_id"
            " WHERE j.chunks_micro >= $1"
            " AND NOT EXISTS (SELECT 1 FROM search_terms t WHERE t.job_id = j.job_id AND t.lexeme = '')",
            min_chunks,
        )
        for r in due:
            await self.pool.execute(
                """
                INSERT INTO search_terms (job_id, user_id, lexeme, df)
                SELECT $1, $2, s.word, s.ndoc FROM ts_stat(format(
                    'SELECT content_tsv FROM conversation_chunks WHERE job_id = %L AND tier = ''micro''', $1::text)) AS s
                 UNION ALL
                SELECT $1, $2, '', count(*) FROM conversation_chunks WHERE job_id = $1 AND tier = 'micro'
                ON CONFLICT (job_id, lexeme) DO NOTHING
                """,
                r["job_id"], r["user_id"],
            )
        return {"counted": [r["job_id"] for r in due], "dropped": stale}

    async def facts(self, conn: asyncpg.Connection, user_id: str, query: str | None, k: int = 20) -> list[FactHit]:
        """Consolidated facts of the person's current import, with the messages they were read in.

        With a query: full text over subject and statement (the query built as for chunks),
        ``ts_rank_cd`` weighted by ``1 + ln(mentions)`` (a statement made in many conversations
        is more surely the person's); without: all, by category, then mentions.
        """
        job = await _current(conn, user_id)
        if job is None:
            return []
        document = "to_tsvector('simple', coalesce(c.fact->>'subject', '') || ' ' || coalesce(c.fact->>'text', ''))"
        mentions = "greatest(coalesce((c.fact->>'mentions')::int, 1), 1)"
        if query is None:
            rows = await conn.fetch(
                f"SELECT c.key, c.fact, 0.0::float8 AS score FROM consolidated_facts c"
                f" WHERE c.user_id = $1 AND c.job_id = $2 ORDER BY c.category, {mentions} DESC, c.position LIMIT $3",
                user_id, job["job_id"], k,
            )
        else:
            terms = await _tsquery(conn, query)
            if not terms:
                return []
            rows = await conn.fetch(
                f"""
                SELECT c.key, c.fact, ts_rank_cd({document}, q) * (1 + ln({mentions}))::float8 AS score
                  FROM consolidated_facts c, to_tsquery('simple', $3) AS q
                 WHERE c.user_id = $1 AND c.job_id = $2 AND {document} @@ q
                 ORDER BY score DESC, {mentions} DESC, c.position
                 LIMIT $4
                """,
                user_id, job["job_id"], " | ".join(terms), k,
            )
        facts = [(r["key"], r["fact"], float(r["score"])) for r in rows]
        chunks = await self._source_chunks(conn, user_id, job["job_id"], facts)
        return [_fact_hit(key, fact, score, chunks) for key, fact, score in facts]

    async def _source_chunks(self, conn, user_id: str, job_id: str, facts: list) -> dict[str, asyncpg.Record]:
        ids = list({s["chunk_id"] for _, f, _ in facts for s in f.get("sources") or () if s.get("chunk_id")})
        rows = await conn.fetch(
            "SELECT k.chunk_id::text AS chunk_id, k.conversation_title, k.message_at FROM conversation_chunks k"
            " WHERE k.user_id = $1 AND k.job_id = $2 AND k.chunk_id = ANY($3::uuid[])",
            user_id, job_id, ids,
        )
        return {r["chunk_id"]: r for r in rows}


def _when(seconds) -> datetime | None:
    return datetime.fromtimestamp(float(seconds), tz=timezone.utc) if seconds is not None else None


def _fact_hit(key: str, fact: dict, score: float, chunks: dict[str, asyncpg.Record]) -> FactHit:
    sources = []
    for s in fact.get("sources") or ():
        chunk = chunks.get(s.get("chunk_id") or "")
        sources.append({"conversation_id": s.get("conversation_id"),
                        "title": chunk["conversation_title"] if chunk else None,
                        "message_ids": list(s.get("message_ids") or ()),
                        "message_at": chunk["message_at"] if chunk else None})
    return FactHit(fact_id=key, category=fact.get("category") or "", subject=fact.get("subject") or "",
                   text=fact.get("text") or "", first_seen=_when(fact.get("first_seen")),
                   last_seen=_when(fact.get("last_seen")), event_date=fact.get("date"),
                   mentions=max(1, int(fact.get("mentions") or 1)), sources=sources, score=score)
