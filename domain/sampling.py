"""A bounded sample of the "richest" conversations, kept while the ingest streams.

The quick pass writes a first profile from one call to a fast, small-context
model, long before the full pipeline has read everything. It cannot see the
whole export, so while conversations stream past we keep the ones that say
the most about the person:

* their own words: words in ``role == "user"`` messages, log-scaled so one
  giant paste does not outrank a hundred real conversations;
* recency: a conversation loses half its weight every ``recency_half_life_days``
  behind the export's newest message (people change; last month matters more
  than five years ago);
* variety: at most ``max_per_title`` conversations with the same normalised
  title, so twenty "Daily standup" chats do not crowd out everything else.

Memory stays bounded whatever the export size: a min-heap keeps a few hundred
candidates, each holding only a short excerpt, never the conversation.
"""

from __future__ import annotations

import heapq
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from soulprint.domain.chunking import role_label
from soulprint.domain.tokens import CHARS_PER_TOKEN, estimate_tokens
from soulprint.models.domain import Conversation

_DAY = 86_400.0
_LN2 = math.log(2.0)

_WORD = re.compile(r"[^\W_]+")  # letters and digits, any script
# Words that do not tell two titles apart ("Help with Python" ~ "Python help").
_TITLE_STOPWORDS = frozenset(
    "a an and the of for to in on with about my me i how what is are help question "
    "chat conversation request".split()
)
# Default titles the apps give untitled chats. They say nothing about the
# content, so they are exempt from the variety cap instead of all colliding.
_GENERIC_TITLES = frozenset({"", "new chat", "untitled", "new conversation", "untitled conversation"})


@dataclass(frozen=True)
class SampleConfig:
    # Estimated tokens of the rendered sample; the quick-pass model's context
    # minus the prompt, instructions and the answer, with margin for the
    # heuristic token estimate.
    token_budget: int = 60_000
    # At most this many conversations in the sample (and ~2x as candidates).
    max_conversations: int = 200
    # Cap on each excerpt, so one conversation cannot take the whole budget.
    per_conversation_tokens: int = 3_000
    # Weight halves for every half-life behind the export's newest message.
    recency_half_life_days: float = 180.0
    # Same normalised title: at most this many in the final selection.
    max_per_title: int = 2
    # Candidates kept while streaming, as a multiple of max_conversations: the
    # slack absorbs what variety and the token budget reject in result().
    candidate_factor: int = 2

    def __post_init__(self) -> None:
        if self.max_conversations < 1 or self.candidate_factor < 1 or self.max_per_title < 1:
            raise ValueError("max_conversations, candidate_factor and max_per_title must be >= 1")
        if self.recency_half_life_days <= 0 or self.per_conversation_tokens < 1:
            raise ValueError("recency_half_life_days and per_conversation_tokens must be positive")


@dataclass(slots=True)
class SampledConversation:
    conversation_id: str
    title: str | None
    created_at: float | None
    updated_at: float | None
    excerpt: str
    user_words: int
    score: float
    newest_time: float | None = None  # newest message (else updated/created)


@dataclass(slots=True)
class _Candidate:
    seq: int  # arrival order: the deterministic tie-break
    sample: SampledConversation
    title_key: str
    words_score: float
    time: float  # 0.0 when undated: undated conversations rank as the oldest


def normalise_title(title: str | None) -> str:
    """Key under which near-duplicate titles collide: lower-case words minus
    filler words and bare numbers ("Day 3 plan" ~ "day 4 plan", but "GPT4" is
    kept), sorted and de-duplicated."""
    words = {
        w for w in _WORD.findall((title or "").lower()) if w not in _TITLE_STOPWORDS and not w.isdigit()
    }
    return " ".join(sorted(words))


def _is_generic(title: str | None) -> bool:
    return " ".join((title or "").lower().split()) in _GENERIC_TITLES


def _clip(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters, at a word if one is
    near the end, marked with an ellipsis."""
    if len(text) <= max_chars:
        return text
    if max_chars <= 1:
        return ""
    cut = text.rfind(" ", max_chars // 2, max_chars)
    if cut < 0:
        cut = max_chars - 1
    return text[:cut].rstrip() + "\u2026"


# Below this, a clipped message says too little to be worth its label.
_MIN_TEXT_CHARS = 40
# Floor on a message's fair share: with hundreds of turns an exact fair share
# would be a few words each; better fewer messages that say something.
_MIN_SHARE_CHARS = 240


def _fair_share(costs: list[int], budget: int) -> int:
    """Largest per-message cap ``c`` with ``sum(min(cost, c)) <= budget``
    (water-filling): short messages are kept whole and the long ones share
    what is left equally, so one paste cannot crowd out the rest."""
    remaining = budget
    ordered = sorted(costs)
    for i, cost in enumerate(ordered):
        share = remaining // (len(ordered) - i)
        if cost > share:
            return share
        remaining -= cost
    return ordered[-1] if ordered else 0


def build_excerpt(conv: Conversation, max_tokens: int) -> str:
    """The person's own messages first, then assistant context, within
    ``max_tokens`` (estimated), one line per message.

    User messages go first and get the budget first because they say who the
    person is; assistant lines only add context with what is left. Within a
    role, long messages are clipped to a fair share so a single paste cannot
    fill the excerpt and several messages get heard.
    """
    budget = max_tokens * CHARS_PER_TOKEN  # <= max_tokens estimated tokens
    # Every line is charged its joining newline; the joined text has one
    # newline fewer than lines, hence the +1.
    available = budget + 1
    lines: list[str] = []
    for role in ("user", "assistant"):
        label = role_label(role)
        overhead = len(label) + 3  # ": " and the newline
        # Whitespace collapsed to keep the excerpt compact. Only the head of a
        # message can survive the clip, so a giant paste is not scanned whole.
        texts = [
            text
            for m in conv.messages
            if m.role == role and (text := " ".join(m.text[: 2 * budget].split()))
        ]
        cap = max(_fair_share([len(t) + overhead for t in texts], available), _MIN_SHARE_CHARS)
        for text in texts:
            room = min(cap, available) - overhead
            if len(text) > room and room < _MIN_TEXT_CHARS:
                continue  # a fragment this short says nothing; a shorter message may still fit
            line = f"{label}: {_clip(text, room)}"
            lines.append(line)
            available -= len(line) + 1
    return "\n".join(lines)


def _date(ts: float | None) -> str:
    if ts is None:
        return "undated"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d")


def _render_one(sample: SampledConversation) -> str:
    title = " ".join((sample.title or "").split()) or "Untitled"
    return f"### {title} ({_date(sample.newest_time)})\n{sample.excerpt}"


def render_sample(samples: list[SampledConversation]) -> str:
    """Compact prompt block: one "### <title> (<YYYY-MM-DD>)" section each."""
    return "\n\n".join(_render_one(s) for s in samples)


class ConversationSampler:
    """Keeps the best ``candidate_factor * max_conversations`` conversations
    seen so far, then picks the final sample in :meth:`result`.

    The final score is ``log(1 + user_words) * 2 ** (-age / half_life)`` where
    the age is measured from the export's newest message, unknown until the
    end. Taking the logarithm, the ranking of two conversations only depends on
    ``log(words_score) + time * ln2 / half_life``: the newest time adds the
    same constant to every conversation. So the heap ranks on that provisional
    key and is exact for the final order; the slack is for the variety and
    budget filters applied at the end.
    """

    def __init__(self, config: SampleConfig = SampleConfig()) -> None:
        self.config = config
        self._capacity = config.max_conversations * config.candidate_factor
        self._half_life = config.recency_half_life_days * _DAY
        # Min-heap of (key, -seq, candidate): the root is the first to go; on
        # equal keys the later arrival goes first (so the result is stable).
        self._heap: list[tuple[float, int, _Candidate]] = []
        self._seq = 0
        self._newest_seen: float | None = None

    def __len__(self) -> int:
        """Candidates currently held (bounded by the capacity)."""
        return len(self._heap)

    @property
    def capacity(self) -> int:
        return self._capacity

    def add(self, conv: Conversation) -> None:
        """Consider one conversation; O(size of its text + log capacity)."""
        seq = self._seq
        self._seq += 1
        newest = conv.newest_time
        if newest is not None and (self._newest_seen is None or newest > self._newest_seen):
            self._newest_seen = newest

        user_words = sum(len(m.text.split()) for m in conv.messages if m.role == "user")
        if user_words == 0:
            return  # nothing in the person's own words: nothing to learn here
        words_score = math.log1p(user_words)
        time = newest if newest is not None else 0.0
        key = math.log(words_score) + time * _LN2 / self._half_life

        heap = self._heap
        if len(heap) >= self._capacity and (key, -seq) <= heap[0][:2]:
            return  # would be evicted at once: skip building its excerpt
        candidate = _Candidate(
            seq=seq,
            sample=SampledConversation(
                conversation_id=conv.id,
                title=conv.title,
                created_at=conv.created_at,
                updated_at=conv.updated_at,
                excerpt=build_excerpt(conv, self.config.per_conversation_tokens),
                user_words=user_words,
                score=0.0,  # final score needs the export's newest time
                newest_time=newest,
            ),
            title_key="" if _is_generic(conv.title) else normalise_title(conv.title),
            words_score=words_score,
            time=time,
        )
        if len(heap) < self._capacity:
            heapq.heappush(heap, (key, -seq, candidate))
        else:
            heapq.heapreplace(heap, (key, -seq, candidate))

    def result(self, newest_time: float | None = None) -> list[SampledConversation]:
        """The final sample, newest first, rendering within ``token_budget``.

        ``newest_time`` is the export's newest message time (the parser's
        summary); by default the newest time among the conversations added.
        Does not consume the sampler: calling it twice gives the same answer.
        """
        cfg = self.config
        now = newest_time if newest_time is not None else (self._newest_seen or 0.0)

        scored: list[tuple[float, int, _Candidate]] = []
        for _, _, c in self._heap:
            age = max(0.0, now - c.time)
            scored.append((c.words_score * 0.5 ** (age / self._half_life), c.seq, c))
        scored.sort(key=lambda item: (-item[0], item[1]))

        chosen: list[SampledConversation] = []
        per_title: dict[str, int] = {}
        used = 0
        for score, _, c in scored:
            if len(chosen) >= cfg.max_conversations:
                break
            if c.title_key and per_title.get(c.title_key, 0) >= cfg.max_per_title:
                continue
            sample = SampledConversation(
                conversation_id=c.sample.conversation_id,
                title=c.sample.title,
                created_at=c.sample.created_at,
                updated_at=c.sample.updated_at,
                excerpt=c.sample.excerpt,
                user_words=c.sample.user_words,
                score=score,
                newest_time=c.sample.newest_time,
            )
            # Cost as rendered, with the "\n\n" separator: the sum of the parts
            # bounds the estimate of the joined block.
            cost = estimate_tokens(_render_one(sample) + "\n\n")
            if used + cost > cfg.token_budget:
                continue  # a smaller excerpt further down may still fit
            used += cost
            if c.title_key:
                per_title[c.title_key] = per_title.get(c.title_key, 0) + 1
            chosen.append(sample)

        # Newest first for the prompt (undated last); ``sort`` is stable, so
        # equal times keep the score order.
        chosen.sort(key=lambda s: -s.newest_time if s.newest_time is not None else math.inf)
        return chosen
