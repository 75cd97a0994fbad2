"""Consolidation: every fact of a job merged into one truthful current picture.

:func:`consolidate` is pure and linear-ish in the number of facts:

1. Facts are bucketed by (category, normalised subject). The subject names
   the slot a fact fills ("home city", "harbor: database"), so a bucket is
   every statement ever made about one thing. Identical texts filed under
   different subjects are first moved to the subject most of them use.
2. Within a bucket, restatements are clustered: the same normalised text, a
   token-set Jaccard >= 0.8 or a difflib ratio >= 0.9. Candidates come from a
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
import difflib
import logging
import math
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Iterable, Mapping, Sequence

from soulprint.domain.facts import normalise_subject
from soulprint.domain.prompts.reduce import ReduceAnswer, reduce_request
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

JACCARD_DUPLICATE = 0.8  # token sets this similar say the same thing
RATIO_DUPLICATE = 0.9  # ... or characters this similar (typos, plurals, punctuation)
# Candidates are pairs with Jaccard >= this; lower than JACCARD_DUPLICATE so
# the difflib test also sees near-misses in token terms ("answer"/"answers").
_CANDIDATE_JACCARD = 0.5
# Candidates checked per fact at most: bounds the worst case (a bucket of
# near-identical boilerplate) at O(n * 64) comparisons.
_MAX_CANDIDATES = 64

DEFAULT_BUDGET_TOKENS = 150_000
DEFAULT_BATCH_TOKENS = 40_000

_WORD = re.compile(r"[^\W_]+")
_CATEGORY_RANK = {c: i for i, c in enumerate(FACT_CATEGORIES)}


def normalise_text(text: str) -> str:
    """Case-folded words only: "Prefers concise answers!" == "prefers  concise answers"."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).casefold()))


def _rank(category: str) -> int:
    return _CATEGORY_RANK.get(category, len(FACT_CATEGORIES))


def _tkey(t: float | None) -> tuple[int, float]:
    # Undated statements sort before every dated one: they can never
    # overrule a statement whose time is known.
    return (0, 0.0) if t is None else (1, t)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def similarity(norm_a: str, tokens_a: frozenset[str], norm_b: str, tokens_b: frozenset[str]) -> float | None:
    """How alike two normalised statements are, or None when they are not near-duplicates."""
    if norm_a == norm_b:
        return 1.0
    j = _jaccard(tokens_a, tokens_b)
    if j >= JACCARD_DUPLICATE:
        return j
    if j < _CANDIDATE_JACCARD:
        # Character-level near-duplicates share most of their words too; this
        # cheap gate keeps difflib for the few pairs that can still pass.
        return None
    la, lb = len(norm_a), len(norm_b)
    # A ratio >= 0.9 needs lengths within ~20% of each other; checking that
    # first keeps the quadratic SequenceMatcher off most pairs.
    if not la or not lb or min(la, lb) / max(la, lb) < RATIO_DUPLICATE:
        return None
    sm = difflib.SequenceMatcher(None, norm_a, norm_b, autojunk=False)
    if sm.real_quick_ratio() < RATIO_DUPLICATE or sm.quick_ratio() < RATIO_DUPLICATE:
        return None
    r = sm.ratio()
    return r if r >= RATIO_DUPLICATE else None


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


@dataclass(slots=True)
class _Cluster:
    rep: _Item  # the first (oldest) statement: matching against it avoids chaining drift
    items: list[_Item] = field(default_factory=list)


class _Clusterer:
    """Near-duplicate clusters of one bucket, fed in time order."""

    def __init__(self, df: Mapping[str, int]) -> None:
        self.df = df
        self.clusters: list[_Cluster] = []
        self.exact: dict[str, int] = {}
        self.index: dict[str, list[int]] = defaultdict(list)

    def _prefix(self, tokens: frozenset[str]) -> list[str]:
        ordered = sorted(tokens, key=lambda t: (self.df.get(t, 0), t))  # rare tokens first
        return ordered[: _prefix_len(len(ordered), _CANDIDATE_JACCARD)]

    def add(self, item: _Item) -> int:
        ci = self.exact.get(item.norm)
        if ci is None:
            prefix = self._prefix(item.tokens)
            ci = self._find(item, prefix)
            if ci is None:
                ci = len(self.clusters)
                self.clusters.append(_Cluster(rep=item))
                for tok in prefix:
                    self.index[tok].append(ci)
        self.exact.setdefault(item.norm, ci)
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


def consolidate(facts: Iterable[Fact]) -> list[ConsolidatedFact]:
    """One ConsolidatedFact per (category, subject), in :func:`sort_facts` order.

    Deterministic: the result does not depend on the order of ``facts``.
    """
    prepared: list[tuple[str, str, _Item]] = []
    df: Counter[str] = Counter()
    subjects_of_text: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for f in facts:
        if not f.text.strip():
            continue
        norm = normalise_text(f.text)
        tokens = frozenset(norm.split())
        df.update(tokens)
        subject = normalise_subject(f.subject) or normalise_subject(" ".join(norm.split()[:8]))
        item = _Item(f, norm, tokens, (_tkey(f.message_time), f.chunk_id, f.ordinal, f.fact_id))
        prepared.append((f.category, subject, item))
        subjects_of_text[(f.category, norm)][subject] += 1

    buckets: dict[tuple[str, str], list[_Item]] = defaultdict(list)
    for category, subject, item in prepared:
        counts = subjects_of_text[(category, item.norm)]
        if len(counts) > 1:
            # The same sentence filed under two subjects ("home city" and
            # "city of residence") is one fact: use its most common subject.
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
