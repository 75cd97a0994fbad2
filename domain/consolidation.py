"""Consolidation: every fact of a job merged into one truthful current picture.

:func:`consolidate` is pure and linear-ish in the number of facts:

1. Facts are bucketed by (category, normalised subject). The subject names
   the slot a fact fills ("home city", "harbor: database"), so a bucket is
   every statement ever made about one thing. One statement filed under
   different subjects is first moved to the subject most of its facts use:
   the same normalised text, or, given the statements' vectors, the same
   thing in other words (cosine within the embedding model's measured
   threshold, plus the checks of :func:`_same_thing`).
2. Within a bucket, restatements are clustered: the same statement (as
   grouped in step 1), a token-set Jaccard >= 0.8 or a difflib ratio >= 0.9
   (:func:`~soulprint.domain.statements.similarity`). Candidates come from a
   prefix-filtered token index (rare tokens first), so a bucket of thousands
   of facts is not compared all against all.
3. Statements in a bucket that are *not* restatements contradict each other
   (one slot, different content): they are laid on a timeline and the newest
   wins; the earlier ones become ``history`` with the period they held.

When the consolidated facts are still too big for one prompt, the model
merges them in batches (:func:`reduce_requests` / :func:`apply_reduction`),
driven by :func:`reduce_until_fits`; whatever it does not mention is kept.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Iterable, Mapping, Sequence

import numpy as np

from soulprint.domain.facts import normalise_subject
from soulprint.domain.prompts.reduce import ReduceAnswer, reduce_request
from soulprint.domain.statements import (
    CANDIDATE_JACCARD,
    Statement,
    adds_nothing,
    names_agree,
    normalise_text,
    similarity,
)
from soulprint.domain.tokens import estimate_tokens
from soulprint.models.facts import (
    FACT_CATEGORIES,
    MAX_HISTORY,
    MAX_SOURCES,
    ConsolidatedFact,
    Fact,
    consolidated_key,
)
from soulprint.models.llm import LLMRequest, as_answer
from soulprint.models.text import one_line

log = logging.getLogger(__name__)

# Candidates checked per fact at most: bounds the worst case (a bucket of
# near-identical boilerplate) at O(n * 64) comparisons.
_MAX_CANDIDATES = 64

DEFAULT_BUDGET_TOKENS = 150_000
DEFAULT_BATCH_TOKENS = 40_000

_CATEGORY_RANK = {c: i for i, c in enumerate(FACT_CATEGORIES)}

# Cosine similarity from which two statements of one category may say the
# same thing in other words, per embedding model (provider, model). Measured
# on the shipped sample's facts and on hand-written paraphrase and
# non-paraphrase pairs (tests/test_consolidation_vectors.py). wordllama: the
# sample's restatements score 0.87-0.98, other paraphrases 0.81-1.0 (and
# some only 0.18-0.77: a static model misses other words for one thing);
# different facts at most 0.76 (Python/Go for scripting), British/American
# English 0.76 is refused by the name check, and swapped antonyms ("dark
# mode"/"light mode" 0.86, "remote"/"office" 0.84) are told apart only by
# the different-subject check of :func:`_same_thing`. USE: different facts
# reach 0.86 (a dog/a cat named Pixel), hence 0.87. A model not in the table
# has not been measured: its facts merge by the lexical rules only.
PARAPHRASE_COSINE: dict[tuple[str, str], float] = {
    ("local", "wordllama-l2-supercat-256"): 0.80,
    ("local", "use-multilingual-v3"): 0.87,
    # e5 puts every pair of short English statements above 0.8 (unrelated
    # facts of one category at 0.83-0.87, "Dagster"/"Airflow" at 0.95).
    ("local", "multilingual-e5-small-q4"): 0.96,
}


def paraphrase_threshold(provider: str, model: str) -> float | None:
    """The measured cosine threshold of an embedding model, or None when it has not been measured."""
    return PARAPHRASE_COSINE.get((provider, model))


def _rank(category: str) -> int:
    return _CATEGORY_RANK.get(category, len(FACT_CATEGORIES))


def _tkey(t: float | None) -> tuple[int, float]:
    # Undated statements sort before every dated one: they can never
    # overrule a statement whose time is known.
    return (0, 0.0) if t is None else (1, t)


def _prefix_len(n: int, threshold: float) -> int:
    """Prefix filtering: two sets with Jaccard >= t share a token among the first
    ``n - ceil(t * n) + 1`` tokens of each (both in one global token order)."""
    if n == 0:
        return 0
    return n - math.ceil(threshold * n - 1e-9) + 1


# --------------------------------------------------------------------------- consolidate


@dataclass(slots=True)
class _Item:
    fact: Fact
    norm: str
    tokens: frozenset[str]
    order: tuple[Any, ...]  # time order, ties by where it was read
    group: str = ""  # statements of one group say the same thing: the group's first normalised text


@dataclass(slots=True)
class _Cluster:
    rep: _Item  # the first (oldest) statement: matching against it avoids chaining drift
    items: list[_Item] = field(default_factory=list)


class _Clusterer:
    """Near-duplicate clusters of one bucket, fed in time order."""

    def __init__(self, df: Mapping[str, int]) -> None:
        self.df = df
        self.clusters: list[_Cluster] = []
        self.exact: dict[str, int] = {}  # group -> cluster
        self.index: dict[str, list[int]] = defaultdict(list)

    def _prefix(self, tokens: frozenset[str]) -> list[str]:
        ordered = sorted(tokens, key=lambda t: (self.df.get(t, 0), t))  # rare tokens first
        return ordered[: _prefix_len(len(ordered), CANDIDATE_JACCARD)]

    def add(self, item: _Item) -> int:
        ci = self.exact.get(item.group)
        if ci is None:
            prefix = self._prefix(item.tokens)
            ci = self._find(item, prefix)
            if ci is None:
                ci = len(self.clusters)
                self.clusters.append(_Cluster(rep=item))
                for tok in prefix:
                    self.index[tok].append(ci)
        self.exact.setdefault(item.group, ci)
        self.clusters[ci].items.append(item)
        return ci

    def _find(self, item: _Item, prefix: list[str]) -> int | None:
        candidates: list[int] = []
        seen: set[int] = set()
        for tok in prefix:
            for ci in self.index.get(tok, ()):
                if ci not in seen:
                    seen.add(ci)
                    candidates.append(ci)
            if len(candidates) >= _MAX_CANDIDATES:
                break
        best: tuple[float, int] | None = None
        for ci in sorted(candidates[:_MAX_CANDIDATES]):
            rep = self.clusters[ci].rep
            s = similarity(item.norm, item.tokens, rep.norm, rep.tokens)
            if s is not None and (best is None or s > best[0]):
                best = (s, ci)
        return best[1] if best else None


def _sources(items: Iterable[_Item], limit: int = MAX_SOURCES) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for it in items:
        f = it.fact
        if f.chunk_id in seen:
            continue
        seen.add(f.chunk_id)
        out.append({"chunk_id": f.chunk_id, "conversation_id": f.conversation_id, "message_ids": list(f.message_ids)})
        if len(out) >= limit:
            break
    return out


def _latest(items: Sequence[_Item], attr: str) -> str | None:
    for it in reversed(items):
        v = getattr(it.fact, attr)
        if v:
            return v
    return None


def _consolidate_bucket(category: str, subject: str, items: list[_Item], df: Mapping[str, int]) -> ConsolidatedFact:
    items.sort(key=lambda it: it.order)
    clusterer = _Clusterer(df)
    # Timeline of runs: consecutive statements of one cluster are one period.
    runs: list[tuple[int, list[_Item]]] = []
    for it in items:
        ci = clusterer.add(it)
        if runs and runs[-1][0] == ci:
            runs[-1][1].append(it)
        else:
            runs.append((ci, [it]))

    current = clusterer.clusters[runs[-1][0]].items
    history: list[dict[str, Any]] = []
    for (_, run), (_, nxt) in zip(runs, runs[1:]):
        history.append({"text": run[-1].fact.text, "from": run[0].fact.message_time,
                        "until": nxt[0].fact.message_time})
    times = [it.fact.message_time for it in current if it.fact.message_time is not None]
    newest_first = list(reversed(current))
    in_current = {id(it) for it in current}
    others = [it for it in reversed(items) if id(it) not in in_current] if len(runs) > 1 else []
    return ConsolidatedFact(
        key=consolidated_key(category, subject),
        category=category,
        text=current[-1].fact.text,  # the latest wording of the current statement
        subject=subject,
        project=_latest(current, "project"),
        date=_latest(current, "date"),
        context=_latest(current, "context"),
        mentions=len({it.fact.conversation_id for it in current}),
        first_seen=min(times) if times else None,
        last_seen=max(times) if times else None,
        sources=_sources(newest_first + others),
        history=history[-MAX_HISTORY:],
    )


def sort_facts(facts: Iterable[ConsolidatedFact]) -> list[ConsolidatedFact]:
    """The canonical order: category, then most mentioned, then key."""
    return sorted(facts, key=lambda f: (_rank(f.category), -f.mentions, f.key))


def paraphrase_texts(facts: Iterable[Fact]) -> list[str]:
    """The texts whose vectors :func:`consolidate` compares: one per distinct
    statement (normalised text), sorted. Embed these and pass them back."""
    canonical: dict[str, str] = {}
    for f in facts:
        norm = normalise_text(f.text)
        if norm and (norm not in canonical or f.text < canonical[norm]):
            canonical[norm] = f.text
    return sorted(canonical.values())


@dataclass(slots=True)
class _Statement:
    """One distinct statement of a category: its wording, subjects and facts."""

    norm: str
    text: str  # its first wording in text order, for the name and content checks
    subjects: set[str] = field(default_factory=set)
    items: list[_Item] = field(default_factory=list)


def _same_thing(a: _Statement, b: _Statement) -> bool:
    """The checks a vector match must pass too (their vectors are already close).

    Names and numbers must agree. Filed under different subjects, the shorter
    statement must also say nothing the longer does not: vectors alone merge
    "prefers dark mode" with "prefers light mode", and a wrong merge across
    subjects would lose a fact, where one within a subject only folds a
    superseded wording into the current one.
    """
    if not names_agree(a.text, b.text):
        return False
    return bool(a.subjects & b.subjects) or adds_nothing(Statement.of(a.text), Statement.of(b.text))


_BLOCK = 256  # statements compared with the groups so far in one matrix product


def _group_paraphrases(items: Sequence[_Item], subjects: Sequence[str], vectors: Mapping[str, Sequence[float]],
                       threshold: float) -> None:
    """Set ``group`` on items of one category whose statements say the same thing.

    ``vectors`` are keyed by normalised text. Statements go most stated first
    (then by text), so the order of the input never matters; each joins the
    closest earlier group whose first statement (never a later member: no
    drift along a chain) is within ``threshold`` and passes
    :func:`_same_thing`. Statements without a vector stay alone. The cost is
    one dot product per statement and group, done a block at a time.
    """
    by_norm: dict[str, _Statement] = {}
    for item, subject in zip(items, subjects):
        st = by_norm.get(item.norm)
        if st is None:
            st = by_norm[item.norm] = _Statement(item.norm, item.fact.text)
        st.text = min(st.text, item.fact.text)
        st.subjects.add(subject)
        st.items.append(item)
    ordered = sorted((st for st in by_norm.values() if st.norm in vectors), key=lambda st: (-len(st.items), st.norm))
    if not ordered:
        return
    matrix = np.asarray([vectors[st.norm] for st in ordered], dtype=np.float32)
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    reps = np.empty_like(matrix)  # the first statement of each group, in order
    heads: list[_Statement] = []
    for start in range(0, len(ordered), _BLOCK):
        block = matrix[start:start + _BLOCK]
        before = len(heads)
        sims_before = block @ reps[:before].T  # against the groups of earlier blocks, at once
        for b, st in enumerate(ordered[start:start + _BLOCK]):
            # ... and against the groups this block has started so far.
            sims = np.concatenate([sims_before[b], reps[before:len(heads)] @ block[b]])
            group = st.norm
            for g in sorted(np.flatnonzero(sims >= threshold), key=lambda g: (-sims[g], g)):
                if _same_thing(st, heads[g]):
                    group = heads[g].norm
                    break
            if group == st.norm:
                reps[len(heads)] = block[b]
                heads.append(st)
            for item in st.items:
                item.group = group


def consolidate(facts: Iterable[Fact], vectors: Mapping[str, Sequence[float]] | None = None,
                threshold: float | None = None) -> list[ConsolidatedFact]:
    """One ConsolidatedFact per (category, subject), in :func:`sort_facts` order.

    With ``vectors`` (text -> vector for :func:`paraphrase_texts`) and the
    embedding model's ``threshold``, statements of one category that say the
    same thing in other words are one fact too, filed under the subject most
    of them use; without, only the lexical rules merge. Deterministic: the
    result does not depend on the order of ``facts``.
    """
    prepared: list[tuple[str, str, _Item]] = []
    df: Counter[str] = Counter()
    for f in facts:
        if not f.text.strip():
            continue
        norm = normalise_text(f.text)
        tokens = frozenset(norm.split())
        df.update(tokens)
        subject = normalise_subject(f.subject) or normalise_subject(" ".join(norm.split()[:8]))
        item = _Item(f, norm, tokens, (_tkey(f.message_time), f.chunk_id, f.ordinal, f.fact_id), group=norm)
        prepared.append((f.category, subject, item))

    if vectors and threshold is not None:
        by_norm_vector = {normalise_text(text): v for text, v in vectors.items()}
        by_category: dict[str, list[tuple[str, _Item]]] = defaultdict(list)
        for category, subject, item in prepared:
            by_category[category].append((subject, item))
        for members in by_category.values():
            _group_paraphrases([it for _, it in members], [s for s, _ in members], by_norm_vector, threshold)

    subjects_of_group: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for category, subject, item in prepared:
        subjects_of_group[(category, item.group)][subject] += 1
    buckets: dict[tuple[str, str], list[_Item]] = defaultdict(list)
    for category, subject, item in prepared:
        counts = subjects_of_group[(category, item.group)]
        if len(counts) > 1:
            # One statement filed under two subjects ("home city" and "city
            # of residence"), in the same or in other words, is one fact:
            # use its most common subject.
            subject = min(counts, key=lambda s: (-counts[s], s))
        buckets[(category, subject)].append(item)

    out = [_consolidate_bucket(cat, subj, items, df) for (cat, subj), items in buckets.items()]
    return sort_facts(out)


# --------------------------------------------------------------------------- rendering


def _day(t: float | None) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d") if t is not None else "?"


def _meta(f: ConsolidatedFact) -> str:
    parts = [f"{f.mentions}x"]
    if f.first_seen is not None or f.last_seen is not None:
        a, b = _day(f.first_seen), _day(f.last_seen)
        parts.append(a if a == b else f"{a}–{b}")
    if f.date:
        parts.append(f"date {f.date}")
    if f.project:
        parts.append(f"project {f.project}")
    if f.context:
        parts.append(f.context)
    return "{" + "; ".join(parts) + "}"


def _history(f: ConsolidatedFact, keep: int = 3) -> str:
    if not f.history:
        return ""
    shown = [f"{h.get('text')} [{_day(h.get('from'))}–{_day(h.get('until'))}]" for h in f.history[-keep:]]
    return " (before: " + "; ".join(shown) + ")"


def fact_line(f: ConsolidatedFact, number: int | None = None) -> str:
    """One fact as a prompt line; numbered lines (for reduction) carry category and subject."""
    if number is None:
        return f"- {f.text} {_meta(f)}{_history(f)}"
    return f"{number}. [{f.category} | {f.subject}] {f.text} {_meta(f)}{_history(f)}"


def render_facts(facts: Sequence[ConsolidatedFact]) -> str:
    """Compact prompt text: a "## category" heading, then one line per fact, in the given order."""
    lines: list[str] = []
    current: str | None = None
    for f in facts:
        if f.category != current:
            if lines:
                lines.append("")
            lines.append(f"## {f.category}")
            current = f.category
        lines.append(fact_line(f))
    return "\n".join(lines)


def consolidated_tokens(facts: Sequence[ConsolidatedFact]) -> int:
    """Estimated tokens of ``render_facts(facts)``."""
    return estimate_tokens(render_facts(facts))


# --------------------------------------------------------------------------- reduction (LLM)

def _batch_order(round_no: int) -> Callable[[ConsolidatedFact], tuple[Any, ...]]:
    # Alternate the neighbourhoods between rounds: by subject first, then by
    # project and wording, so facts a first round kept apart meet later.
    if round_no % 2 == 0:
        return lambda f: (_rank(f.category), f.subject, f.key)
    return lambda f: (_rank(f.category), f.project or "\uffff", normalise_text(f.text), f.key)


def reduce_requests(
    facts: Sequence[ConsolidatedFact],
    *,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    job_id: str | None = None,
    round_no: int = 0,
) -> list[tuple[LLMRequest, list[ConsolidatedFact]]]:
    """Requests merging ``facts`` in batches of about ``batch_tokens`` rendered tokens.

    A batch of one fact has nothing to merge and gets no request; its fact is
    simply not in any returned batch (callers keep it).
    """
    ordered = sorted(facts, key=_batch_order(round_no))
    batches: list[list[ConsolidatedFact]] = []
    group: list[ConsolidatedFact] = []
    used = 0
    for f in ordered:
        cost = estimate_tokens(fact_line(f, 10_000)) + 1
        if group and used + cost > batch_tokens:
            batches.append(group)
            group, used = [], 0
        group.append(f)
        used += cost
    if group:
        batches.append(group)
    batches = [b for b in batches if len(b) >= 2]

    out: list[tuple[LLMRequest, list[ConsolidatedFact]]] = []
    for i, batch in enumerate(batches, 1):
        lines = "\n".join(fact_line(f, n) for n, f in enumerate(batch, 1))
        payload = {"facts": [{"index": n, "category": f.category, "subject": f.subject, "text": f.text,
                              "date": f.date, "project": f.project, "mentions": f.mentions,
                              "last_seen": f.last_seen} for n, f in enumerate(batch, 1)]}
        out.append((reduce_request(lines, len(batch), i, len(batches), payload, job_id), batch))
    return out


def _newest(members: Sequence[ConsolidatedFact]) -> ConsolidatedFact:
    return max(members, key=lambda f: (_tkey(f.last_seen), f.mentions, f.key))


def _merge_sources(members: Sequence[ConsolidatedFact]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for m in sorted(members, key=lambda f: (_tkey(f.last_seen), f.key), reverse=True):
        for s in m.sources:
            cid = str(s.get("chunk_id"))
            if cid not in seen and len(out) < MAX_SOURCES:
                seen.add(cid)
                out.append(dict(s))
    return out


def _merge_history(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    unique: dict[tuple[str, Any], dict[str, Any]] = {}
    for h in entries:
        unique.setdefault((str(h.get("text")), h.get("from")), dict(h))
    ordered = sorted(unique.values(), key=lambda h: (_tkey(h.get("from")), _tkey(h.get("until")), str(h.get("text"))))
    return ordered[-MAX_HISTORY:]


def _merge(members: Sequence[ConsolidatedFact], *, category: str, subject: str, text: str,
           date: str | None = None, project: str | None = None) -> ConsolidatedFact:
    """Members that say one thing, as one fact: counts and periods add up."""
    newest = _newest(members)
    firsts = [m.first_seen for m in members if m.first_seen is not None]
    lasts = [m.last_seen for m in members if m.last_seen is not None]
    by_recency = sorted(members, key=lambda f: (_tkey(f.last_seen), f.key), reverse=True)
    return ConsolidatedFact(
        key=consolidated_key(category, subject),
        category=category,
        text=text,
        subject=subject,
        project=project or next((m.project for m in by_recency if m.project), None),
        date=date or next((m.date for m in by_recency if m.date), None),
        context=newest.context or next((m.context for m in by_recency if m.context), None),
        mentions=sum(m.mentions for m in members),
        first_seen=min(firsts) if firsts else None,
        last_seen=max(lasts) if lasts else None,
        sources=_merge_sources(members),
        history=_merge_history(h for m in members for h in m.history),
    )


def apply_reduction(batch: Sequence[ConsolidatedFact],
                    answer: ReduceAnswer | Mapping[str, Any] | None) -> list[ConsolidatedFact]:
    """The batch after the model's merges, in canonical order.

    ``answer`` is the validated answer (a mapping is validated here; an
    invalid one merges nothing). ``merged_from`` numbers are 1-based, as
    shown in the prompt. An item can only be merged once (the first group
    naming it wins); an output naming no valid item is ignored (it would be a
    fact without a source); every item not merged is kept unchanged, so
    nothing is silently lost.
    """
    reduced = as_answer(ReduceAnswer, answer)
    claimed: set[int] = set()
    out: list[ConsolidatedFact] = []
    for item in reduced.facts if reduced is not None else ():
        idxs: list[int] = []
        for n in item.merged_from:
            if 1 <= n <= len(batch) and (n - 1) not in claimed and (n - 1) not in idxs:
                idxs.append(n - 1)
        text = one_line(item.text, 400)
        if not idxs or not text:
            continue
        members = [batch[i] for i in idxs]
        subject = normalise_subject(item.subject) or _newest(members).subject
        claimed.update(idxs)
        out.append(_merge(members, category=item.category, subject=subject, text=text,
                          date=one_line(item.date or "", 40) or None,
                          project=one_line(item.project or "", 120) or None))
    out.extend(f for i, f in enumerate(batch) if i not in claimed)
    return sort_facts(merge_same_keys(out))


def merge_same_keys(facts: Iterable[ConsolidatedFact]) -> list[ConsolidatedFact]:
    """Facts that ended up with one (category, subject), as one fact.

    Restatements add up; a different statement is superseded by the most
    recently seen one and goes to its history, as in :func:`consolidate`.
    """
    groups: dict[str, list[ConsolidatedFact]] = defaultdict(list)
    for f in facts:
        groups[f.key].append(f)
    out: list[ConsolidatedFact] = []
    for members in groups.values():
        if len(members) == 1:
            out.append(members[0])
            continue
        winner = _newest(members)
        wn = normalise_text(winner.text)
        wt = frozenset(wn.split())
        same = [winner]
        history: list[dict[str, Any]] = []
        for m in sorted(members, key=lambda f: (_tkey(f.first_seen), f.key)):
            if m is winner:
                continue
            mn = normalise_text(m.text)
            if similarity(wn, wt, mn, frozenset(mn.split())) is not None:
                same.append(m)
            else:
                history.extend(m.history)
                history.append({"text": m.text, "from": m.first_seen,
                                 "until": winner.first_seen if winner.first_seen is not None else m.last_seen})
        merged = _merge(same, category=winner.category, subject=winner.subject, text=winner.text,
                        date=winner.date, project=winner.project)
        if history:
            merged.history = _merge_history(list(merged.history) + history)
            merged.sources = _merge_sources(same + [m for m in members if m not in same])
        out.append(merged)
    return out


@dataclass
class ReductionReport:
    facts: list[ConsolidatedFact]
    rounds: int = 0
    requests: int = 0
    failed_requests: int = 0
    tokens_before: int = 0
    tokens_after: int = 0
    truncated: int = 0  # facts dropped after the rounds to fit the budget
    dropped_keys: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.truncated == 0


LLMCall = Callable[[LLMRequest], Awaitable[Any]]


def _answer_of(result: Any) -> ReduceAnswer | Mapping[str, Any] | None:
    """The structured answer of an LLMResult (or a plain dict from a test double)."""
    if isinstance(result, BaseException):
        return None
    if isinstance(result, Mapping):
        return result
    if getattr(result, "ok", False):
        return getattr(result, "answer", None) or getattr(result, "data", None)
    return None


def truncate_to_budget(facts: Sequence[ConsolidatedFact],
                       budget_tokens: int) -> tuple[list[ConsolidatedFact], list[ConsolidatedFact]]:
    """(kept, dropped): keep the most mentioned, then most recently seen, facts that fit."""
    priority = sorted(facts, key=lambda f: (-f.mentions, -_tkey(f.last_seen)[0], -_tkey(f.last_seen)[1], f.key))
    n = 0
    used = len(FACT_CATEGORIES) * 4  # headings and blank lines: few and small
    for f in priority:
        cost = estimate_tokens(fact_line(f)) + 1
        if used + cost > budget_tokens:
            break
        used += cost
        n += 1
    # The per-line estimates round differently from the joined text: check.
    while n and consolidated_tokens(sort_facts(priority[:n])) > budget_tokens:
        n -= 1
    return sort_facts(priority[:n]), priority[n:]


async def reduce_until_fits(
    facts: Sequence[ConsolidatedFact],
    llm_complete: LLMCall,
    *,
    budget_tokens: int = DEFAULT_BUDGET_TOKENS,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    max_rounds: int = 4,
    job_id: str | None = None,
) -> ReductionReport:
    """Merge rounds until ``render_facts`` fits ``budget_tokens``.

    Each round sends every batch at once (``asyncio.gather``) through
    ``llm_complete`` (e.g. ``client.complete``; it may return an LLMResult or
    the answer's dict). A failed batch is kept as it was. Rounds stop when the
    facts fit, when a round shrinks nothing (another would cost as much for
    nothing), or after ``max_rounds``; then the least mentioned, oldest facts
    are dropped until it fits, and the report says how many.
    """
    current = sort_facts(facts)
    tokens = consolidated_tokens(current)
    report = ReductionReport(facts=current, tokens_before=tokens)
    while tokens > budget_tokens and report.rounds < max_rounds:
        pairs = reduce_requests(current, batch_tokens=batch_tokens, job_id=job_id, round_no=report.rounds)
        if not pairs:
            break
        results = await asyncio.gather(*(llm_complete(req) for req, _ in pairs), return_exceptions=True)
        report.rounds += 1
        report.requests += len(pairs)
        covered = {id(f) for _, batch in pairs for f in batch}
        reduced: list[ConsolidatedFact] = [f for f in current if id(f) not in covered]
        for (_, batch), res in zip(pairs, results):
            data = _answer_of(res)
            if data is None:
                report.failed_requests += 1
                if isinstance(res, BaseException):
                    log.warning("reduce_facts batch failed: %s: %s", type(res).__name__, res)
                reduced.extend(batch)
                continue
            reduced.extend(apply_reduction(batch, data))
        reduced = sort_facts(merge_same_keys(reduced))
        new_tokens = consolidated_tokens(reduced)
        progressed = new_tokens < tokens
        current, tokens = reduced, new_tokens
        log.info("reduce_facts round %d: %d facts, ~%d tokens (budget %d)", report.rounds, len(current), tokens,
                 budget_tokens)
        if not progressed:
            break
    if tokens > budget_tokens:
        kept, dropped = truncate_to_budget(current, budget_tokens)
        report.truncated = len(dropped)
        report.dropped_keys = [f.key for f in dropped]
        log.warning("reduce_facts: still ~%d tokens after %d round(s); dropped %d least-mentioned facts to fit %d",
                    tokens, report.rounds, len(dropped), budget_tokens)
        current, tokens = kept, consolidated_tokens(kept)
    report.facts = current
    report.tokens_after = tokens
    return report
