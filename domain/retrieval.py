"""Retrieval logic with no I/O: the full-text query, reciprocal-rank fusion, the response.

Full text: chunks are indexed with the `simple` configuration (names, dates
and words of every language stay as written; migration 0006). A question in
English would miss inflected forms and be drowned by stop words, so the query
side is language-aware instead: each word the `simple` parser finds is kept
as written, OR'd with its English stem as a prefix (``'moving' | 'move':*``
matches "moved" and "moves"), and English stop words are dropped. The terms
are OR'd, not AND'ed: a question rarely has every one of its words in one
micro chunk. A chunk's rank is the sum of the inverse document frequencies
(``ln(1 + N / (1 + df))`` over the person's micro chunks) of the terms it
matches, then ``ts_rank_cd``: a rare name or place outweighs several common
words, which a plain ``ts_rank_cd`` (no document frequencies) cannot do.

Which rows are scored (``plan_full_text``): a common word matches 5-9% of a
large person's chunks, and every matching row costs ~15 µs to fetch and
score, so OR-ing the terms and scoring every match took 50-150 ms for
100,000 chunks (bench/README.md, "Search at scale"). Because a row's score is
the sum of the idfs of the terms it matches, the rows scoring at least a
threshold are exactly those matching one of the term sets whose idfs reach it:
a boolean query (``'a' & 'b' | 'c'``) that the GIN index answers without
touching the other rows. The threshold is the highest one that the document
frequencies (assumed independent) expect to leave enough rows for the
candidates asked for; everything above it is read in full, so the top of the
ranking is the same as scoring every match. Where the threshold level alone
would be thousands of rows (a question of only common words), those rows all
tie on score and a bounded sample of them is ranked by ``ts_rank_cd``.

Fusion: reciprocal rank (``sum 1 / (K + rank)`` over the retrievers that
returned a chunk; K = 60, the usual constant), which needs no score
calibration between a text rank and a cosine distance.

Neighbour expansion (``expand``): a micro hit is one sentence or two of one
message; what it means is often in the messages around it. Each hit is
widened, one neighbouring micro chunk at a time and in rank order across
hits, until the hits' total tokens would pass the budget; a chunk is never
shown twice (not a hit's own, not another hit's context), so two hits in one
thread grow towards each other and stop where they meet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from itertools import groupby
from typing import Sequence

RRF_K = 60
RETRIEVERS = ("full_text", "vector")
# The full-text candidate query is built from the query's rarest terms (2^n term sets are
# weighed); the others still add to the score of the rows found.
PLAN_TERMS = 8
# The threshold leaves this many times the candidates asked for, as estimated (words of one
# question co-occur more often than independence says, so the estimate errs low).
PLAN_HEADROOM = 2
# A stem's prefix covering at most this many lexemes of the import is spelled out (vocabulary_term).
PREFIX_LEXEMES = 32
# At most this many rows of the threshold level are ranked when it alone would be more: they
# score alike, and ts_rank_cd orders them (~8 us a row scored; 200 is four times the depth).
SAMPLE_CAP = 200


def tsquery_terms(words: Sequence[tuple[str, str | None]]) -> list[str]:
    """One `to_tsquery('simple', …)` term per searchable word, from (word as parsed by `simple`,
    its English stem or None for a stop word) pairs: the word, OR'd with its stem as a prefix."""
    terms: list[str] = []
    for word, stem in words:
        if not stem:
            continue
        term = _quoted(word)
        if stem != word:
            term = f"({term} | {_quoted(stem)}:*)"
        if term not in terms:
            terms.append(term)
    return terms


def vocabulary_term(word: str, stem: str | None, lexemes: Sequence[str]) -> str | None:
    """The term of one word when the import's vocabulary is known: ``lexemes`` are the import's
    words that the word or its stem's prefix covers, spelled out (``'moving' | 'move':*`` becomes
    ``('move' | 'moved' | 'moving')``), which matches the same chunks of that import. A prefix
    makes the GIN index gather every person's lexemes under it (~20 ms for ``'run':*`` among
    1,000,000 chunks); named lexemes are direct entries. More than PREFIX_LEXEMES and the prefix
    stays. Sorted, so that words of one stem in a question ("runs", "running") are one term."""
    if not stem:
        return None
    if len(lexemes) > PREFIX_LEXEMES:
        return tsquery_terms([(word, stem)])[0]
    spelled = sorted(set(lexemes)) or [word]  # none: the import has no such word (nothing matches)
    return "(" + " | ".join(map(_quoted, spelled)) + ")" if len(spelled) > 1 else _quoted(spelled[0])


def tsquery_text(words: Sequence[tuple[str, str | None]]) -> str:
    """The terms OR'd into one `to_tsquery` text; '' when nothing is left to search for."""
    return " | ".join(tsquery_terms(words))


def idf(n: int, df: int) -> float:
    """``ln(1 + N / (1 + df))``: what matching a term of ``df`` documents among ``n`` is worth."""
    return math.log(1 + n / (1 + df))


@dataclass(frozen=True)
class FullTextPlan:
    """How the full-text retriever reads and scores one query (``plan_full_text``)."""

    terms: list[str]  # every term with a match, its tsquery text ...
    idfs: list[float]  # ... and its weight: a row scores the sum over the terms it matches
    ranked: str  # all terms OR'd: what ts_rank_cd ranks ties by
    above: str | None  # rows scoring above the threshold level, all read (None: no such level)
    at: str  # rows scoring at least the threshold
    cap: int | None  # read at most this many rows of `at` beyond `above` (None: all of them)
    complete: bool  # the threshold is the lowest level: every row matching a term may be read
    estimated: float  # rows `at` is expected to match

    def to_json(self) -> dict:
        return {"terms": len(self.terms), "estimated": round(self.estimated, 1), "capped": self.cap is not None,
                "complete": self.complete}


def plan_full_text(terms: Sequence[tuple[str, int]], n: int, depth: int, *, lowest: bool = False,
                   cap: int = SAMPLE_CAP) -> FullTextPlan | None:
    """The plan for (term, document frequency) pairs among ``n`` documents, ``depth`` rows wanted.

    ``lowest``: the threshold at its lowest level (every row matching one of the planned terms),
    for when a plan's estimate proved too high (a filter, or words that avoid each other).
    None when no term matches anything.
    """
    live = [(t, df) for t, df in terms if df > 0]
    if not live:
        return None
    n = max(n, max(df for _, df in live))
    weights = [idf(n, df) for _, df in live]
    planned = sorted(range(len(live)), key=lambda i: (-weights[i], i))[:PLAN_TERMS]
    sets = []  # (score, expected share of the rows, term indices) of every non-empty set of planned terms
    for mask in range(1, 1 << len(planned)):
        members = [planned[b] for b in range(len(planned)) if mask >> b & 1]
        share = 1.0
        for b, i in enumerate(planned):
            p = live[i][1] / n
            share *= p if mask >> b & 1 else 1 - p
        sets.append((round(sum(weights[i] for i in members), 9), share, members))
    sets.sort(key=lambda s: -s[0])
    levels = [(score, sum(s[1] for s in group)) for score, group in
              ((score, list(group)) for score, group in groupby(sets, key=lambda s: s[0]))]
    expected, chosen = 0.0, len(levels) - 1
    for i, (_, share) in enumerate(levels):
        expected += share * n
        if not lowest and expected >= PLAN_HEADROOM * depth:
            chosen = i
            break
    else:
        expected = sum(share for _, share in levels) * n
    threshold = levels[chosen][0]
    texts = [t for t, _ in live]
    at = _reaching(sets, threshold, texts, weights)
    above = _reaching(sets, levels[chosen - 1][0], texts, weights) if chosen > 0 else None
    capped = expected > cap
    return FullTextPlan(terms=texts, idfs=weights, ranked=" | ".join(texts), above=above if capped else None,
                        at=at, cap=cap if capped else None,
                        complete=chosen == len(levels) - 1 and len(planned) == len(live), estimated=expected)


def _reaching(sets, threshold: float, texts: list[str], weights: list[float]) -> str:
    """The tsquery of the rows scoring at least ``threshold``: the minimal term sets reaching it
    (without any one of its terms a set falls short), each an AND, OR'd."""
    minimal = [m for score, _, m in sets if score >= threshold
               and all(round(score - weights[i], 9) < threshold for i in m)]
    return " | ".join("(" + " & ".join(texts[i] for i in m) + ")" for m in minimal)


def _quoted(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass(frozen=True)
class Candidate:
    """One chunk a retriever returned, in its rank order (1 = best)."""

    chunk_id: str
    conversation_id: str
    title: str | None
    message_ids: list[str]
    tier: str
    message_at: datetime | None
    tokens: int
    text: str
    chunk_index: int = 0  # position in its conversation's tier (what "neighbouring" is measured in)


@dataclass(frozen=True)
class Context:
    """A hit widened by its neighbouring micro chunks: the passage in conversation order."""

    text: str  # the neighbours before, the hit's own text, the neighbours after
    message_ids: list[str]  # the passage's messages, in order
    tokens: int  # the passage's tokens (the hit's own included)
    added_message_ids: list[str]  # messages the hit itself does not cover
    added_tokens: int

    def to_json(self) -> dict:
        return {"text": self.text, "message_ids": self.message_ids, "tokens": self.tokens,
                "added_message_ids": self.added_message_ids, "added_tokens": self.added_tokens}


@dataclass(frozen=True)
class Hit(Candidate):
    """A candidate as the search returns it: its fused score and its rank in each retriever."""

    score: float = 0.0
    ranks: dict[str, int | None] = field(default_factory=dict)  # None: that retriever did not return it
    context: Context | None = None  # only when the search was asked to expand

    @classmethod
    def of(cls, c: Candidate, score: float, ranks: dict[str, int | None]) -> "Hit":
        return cls(**{f.name: getattr(c, f.name) for f in fields(Candidate)}, score=score, ranks=ranks)

    @property
    def total_tokens(self) -> int:
        return self.context.tokens if self.context else self.tokens

    def to_json(self) -> dict:
        out = {"chunk_id": self.chunk_id, "conversation_id": self.conversation_id, "title": self.title,
               "message_ids": self.message_ids, "tier": self.tier,
               "message_at": self.message_at.isoformat() if self.message_at else None,
               "score": round(self.score, 6), "ranks": self.ranks, "tokens": self.tokens, "text": self.text}
        if self.context is not None:
            out["context"] = self.context.to_json()
        return out


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    k: int
    candidates: dict[str, int]  # how many chunks each retriever produced
    job_id: str | None  # the person's current import searched (None: the person has none)
    space: str | None  # the embedding space of the vector side
    notes: list[str] = field(default_factory=list)  # why a retriever found nothing, said out loud
    vector_path: str | None = None  # "exact", "hnsw", or "exact after hnsw" (the index scan came up short)
    expand_tokens: int | None = None  # the budget the hits were widened within (None: not widened)

    @property
    def fewer_than_k(self) -> bool:
        return len(self.hits) < self.k

    @property
    def tokens(self) -> int:
        return sum(h.total_tokens for h in self.hits)

    def to_json(self) -> dict:
        return {"hits": [h.to_json() for h in self.hits],
                "stats": {"k": self.k, "returned": len(self.hits), "fewer_than_k": self.fewer_than_k,
                          "candidates": self.candidates, "job_id": self.job_id, "space": self.space,
                          "vector_path": self.vector_path, "tokens": self.tokens,
                          "expand_tokens": self.expand_tokens, "notes": self.notes}}


def fuse(rankings: dict[str, Sequence[Candidate]], k: int) -> list[Hit]:
    """Reciprocal-rank fusion of each retriever's ranked candidates; the best ``k``.

    Ties (equal score) go to the chunk with the better best rank, then to the retriever
    listed first: a total order that does not depend on chunk ids.
    """
    by_id: dict[str, Candidate] = {}
    ranks: dict[str, dict[str, int | None]] = {}
    for name, candidates in rankings.items():
        for rank, c in enumerate(candidates, start=1):
            by_id.setdefault(c.chunk_id, c)
            ranks.setdefault(c.chunk_id, dict.fromkeys(rankings, None))[name] = rank
    order = list(rankings)
    scored = []
    for chunk_id, r in ranks.items():
        score = sum(1.0 / (RRF_K + n) for n in r.values() if n is not None)
        best = min((n, order.index(name)) for name, n in r.items() if n is not None)
        scored.append((-score, best, chunk_id))
    scored.sort()
    hits = []
    for neg, _, chunk_id in scored[:k]:
        hits.append(Hit.of(by_id[chunk_id], -neg, ranks[chunk_id]))
    return hits


def single(name: str, rankings: dict[str, Sequence[Candidate]], k: int) -> list[Hit]:
    """One retriever's own ranking as hits (what fusion is measured against)."""
    return fuse({name: rankings[name]}, k)


def expand(hits: Sequence[Hit], neighbours: dict[str, tuple[Sequence[Candidate], Sequence[Candidate]]],
           budget: int) -> list[Hit]:
    """The hits widened by their neighbours while the total tokens stay within ``budget``.

    ``neighbours[chunk_id]``: the micro chunks before the hit (nearest first) and after it
    (nearest first), of its conversation. Rounds in rank order, each hit taking its next
    neighbour on the side it took fewer from; a side closes at a chunk already shown or one
    that does not fit. Hits are never dropped: a budget below their own tokens adds nothing.
    """
    used = {h.chunk_id for h in hits}
    left = budget - sum(h.tokens for h in hits)
    taken: list[tuple[list[Candidate], list[Candidate]]] = [([], []) for _ in hits]
    open_sides = [[True, True] for _ in hits]
    grew = True
    while grew:
        grew = False
        for i, h in enumerate(hits):
            before, after = neighbours.get(h.chunk_id, ((), ()))
            for side in sorted((0, 1), key=lambda s: len(taken[i][s])):
                if not open_sides[i][side]:
                    continue
                pool, n = (before, after)[side], len(taken[i][side])
                if n >= len(pool) or pool[n].chunk_id in used or pool[n].tokens > left:
                    open_sides[i][side] = False
                    continue
                c = pool[n]
                taken[i][side].append(c)
                used.add(c.chunk_id)
                left -= c.tokens
                grew = True
                break
    return [replace(h, context=_context(h, before, after)) for h, (before, after) in zip(hits, taken)]


def _context(h: Hit, before: list[Candidate], after: list[Candidate]) -> Context:
    passage = [*reversed(before), h, *after]
    ids = list(dict.fromkeys(m for c in passage for m in c.message_ids))
    own = set(h.message_ids)
    added = sum(c.tokens for c in before) + sum(c.tokens for c in after)
    return Context(text="\n".join(c.text for c in passage), message_ids=ids, tokens=h.tokens + added,
                   added_message_ids=[m for m in ids if m not in own], added_tokens=added)


@dataclass(frozen=True)
class FactHit:
    """A consolidated fact found for a query, with the messages it was read in."""

    fact_id: str  # the consolidated key (stable across runs of one import)
    category: str
    subject: str
    text: str
    first_seen: datetime | None
    last_seen: datetime | None
    event_date: str | None  # the date the fact itself names ("2025-09"), as written
    mentions: int
    sources: list[dict]  # {conversation_id, title, message_ids, message_at}
    score: float

    def to_json(self) -> dict:
        return {"fact_id": self.fact_id, "category": self.category, "subject": self.subject, "text": self.text,
                "first_seen": _iso(self.first_seen), "last_seen": _iso(self.last_seen),
                "event_date": self.event_date, "mentions": self.mentions,
                "sources": [{**s, "message_at": _iso(s.get("message_at"))} for s in self.sources],
                "score": round(self.score, 6)}


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None
