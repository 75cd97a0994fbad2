"""Answering from a person's history, with no I/O: which passages go in, what they cite, the offline answer.

The query service retrieves hits (domain/retrieval.py), and this module turns
them into numbered passages that fit the prompt's token budget, keeps the
latest turns of the conversation that fit theirs, maps the passage numbers an
answer cites back to the chunks and messages they came from, and writes the
offline provider's extractive answer: the passage sentences and MEMORY
bullets that share the most words with the question, said to be exactly that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

from soulprint.domain.retrieval import Hit
from soulprint.domain.tokens import CHARS_PER_TOKEN, estimate_tokens
from soulprint.models.query import Turn

HISTORY_TOKENS = 2_000  # the conversation so far: its latest turns, within this
EXCERPT_CHARS = 300  # a source's excerpt


def passage_of(hit: Hit) -> tuple[str, list[str]]:
    """A hit's text and messages as a passage: widened by its neighbouring messages when the search
    expanded it (``hit.context``), else its own."""
    if hit.context is not None:
        return hit.context.text, list(hit.context.message_ids)
    return hit.text, list(hit.message_ids)


@dataclass(frozen=True)
class Passage:
    """A hit as the prompt numbers it (1-based): ``text`` is what the prompt holds, ``message_ids``
    the messages that text comes from."""

    n: int
    hit: Hit
    text: str
    message_ids: list[str]

    @property
    def date(self) -> str:
        return self.hit.message_at.date().isoformat() if self.hit.message_at else ""

    def payload(self) -> dict[str, Any]:
        """What the offline provider reads (it never reads the prompt text)."""
        return {"n": self.n, "title": self.hit.title or "", "date": self.date, "text": self.text}

    def source(self) -> dict[str, Any]:
        """The passage as an answer's source: its messages, and as excerpt the hit's own text (what
        matched, not the context around it)."""
        h = self.hit
        return {"n": self.n, "chunk_id": h.chunk_id, "conversation_id": h.conversation_id, "title": h.title,
                "message_ids": list(self.message_ids), "tier": h.tier, "message_at": _iso(h.message_at),
                "excerpt": _cut(" ".join(h.text.split()), EXCERPT_CHARS)}


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def _cut(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1].rstrip() + "…"


def select_passages(hits: Sequence[Hit], budget_tokens: int) -> list[Passage]:
    """The hits, best first, that fit ``budget_tokens`` together, numbered from 1.

    A hit whose messages an earlier passage of the same conversation already
    holds (the same moment found at two tiers, or inside a neighbour's
    expansion) adds nothing and is left out. A hit too big for what is left is
    skipped for a smaller one, except the first: it is cut to the budget, so
    a question with any hit always has a passage.
    """
    passages: list[Passage] = []
    held: dict[str, set[str]] = {}
    left = budget_tokens
    for hit in hits:
        text, message_ids = passage_of(hit)
        if message_ids and set(message_ids) <= held.get(hit.conversation_id, set()):
            continue
        text = text.strip()
        cost = estimate_tokens(text)
        if cost > left:
            if passages or left <= 0:
                continue
            text = text[: left * CHARS_PER_TOKEN].rstrip()
            cost = estimate_tokens(text)
        passages.append(Passage(len(passages) + 1, hit, text, message_ids))
        held.setdefault(hit.conversation_id, set()).update(message_ids)
        left -= cost
    return passages


def recent_turns(turns: Sequence[Turn], budget_tokens: int = HISTORY_TOKENS) -> list[Turn]:
    """The latest turns whose texts fit ``budget_tokens`` together, oldest first."""
    kept: list[Turn] = []
    left = budget_tokens
    for turn in reversed(turns):
        cost = estimate_tokens(turn.content)
        if cost > left:
            break
        kept.append(turn)
        left -= cost
    return kept[::-1]


def cited_sources(passages: Sequence[Passage], cited: Iterable[int]) -> list[dict[str, Any]]:
    """The sources of the passage numbers an answer cites, in the order it cites them (each once;
    a number that is no passage is dropped)."""
    by_n = {p.n: p for p in passages}
    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    for n in cited:
        if n in by_n and n not in seen:
            seen.add(n)
            out.append(by_n[n].source())
    return out


# --------------------------------------------------------------------------- the extractive answer

OFFLINE_NOTICE = "Offline extractive answer (no language model was used)"

_WORD = re.compile(r"[^\W_]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_STOP = frozenset(
    "a an and are as at be been but by can could did do does for from had has have how i i'm if in into is it its "
    "me my of on or our so than that the their them then there these they this to was we were what when where "
    "which who why will with would you your about any all also just more most some tell remind know ever "
    "again please".split())
_SUFFIXES = ("ing", "ed", "es", "s", "e")


def _stem(word: str) -> str:
    """A crude English stem, enough to match "moving", "moved" and "move"."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _terms(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def _overlap(question: set[str], text: str) -> int:
    return len(question & _terms(text))


def _memory_bullets(memory_md: str) -> list[str]:
    return [line.strip()[2:].strip() for line in memory_md.splitlines() if line.strip().startswith(("- ", "* "))]


def _best_sentences(question: set[str], text: str, n: int = 2) -> list[str]:
    """The ``n`` sentences of ``text`` that share the most words with the question, in text order."""
    sentences = [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]
    scored = sorted(((-_overlap(question, s), i) for i, s in enumerate(sentences)))
    picked = sorted(i for score, i in scored[:n] if score < 0)
    return [_cut(" ".join(sentences[i].split()), EXCERPT_CHARS) for i in picked]


def extractive_answer(question: str, passages: Sequence[Mapping[str, Any]], memory_md: str,
                      *, max_passages: int = 3, max_bullets: int = 3) -> dict[str, Any]:
    """``{"answer", "citations"}`` from the passages (``Passage.payload()`` dicts) and MEMORY bullets
    that share the most words with ``question``; ties go to the better-ranked passage."""
    terms = _terms(question)
    ranked = sorted(((-_overlap(terms, str(p.get("text") or "")), i) for i, p in enumerate(passages)))
    chosen = [passages[i] for score, i in ranked[:max_passages] if score < 0]
    bullets = sorted(((-_overlap(terms, b), i, b) for i, b in enumerate(_memory_bullets(memory_md or ""))))
    memory = [b for score, _, b in bullets[:max_bullets] if score < 0]
    if not chosen and not memory:
        return {"answer": f"{OFFLINE_NOTICE}: nothing in your history or MEMORY shares a word with the question, "
                          "so your history does not seem to hold the answer.", "citations": []}
    lines = [f"{OFFLINE_NOTICE}: these are the parts of your history and MEMORY that share the most words "
             "with the question."]
    if memory:
        lines += ["", "From MEMORY:"] + [f"- {b}" for b in memory]
    if chosen:
        lines += ["", "From your conversations:"]
        for p in chosen:
            where = ", ".join(x for x in (str(p.get("title") or ""), str(p.get("date") or "")) if x)
            quote = " … ".join(_best_sentences(terms, str(p.get("text") or "")))
            lines.append(f"- [{p['n']}]{f' {where}' if where else ''}: {quote}")
    return {"answer": "\n".join(lines), "citations": [int(p["n"]) for p in chosen]}
