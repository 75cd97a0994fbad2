"""Cut one conversation into retrievable chunks at three granularities.

Each tier answers a different kind of question later on, so the same text is
indexed three times at different sizes:

* ``micro`` (~200 characters): a sentence or two of one message, so a name, a
  date or a precise fact is not drowned out by its surroundings in the
  embedding.
* ``medium`` (~2,000 tokens, ~200 tokens overlap): the workhorse for retrieval
  and fact extraction; big enough to hold a question and its answer, with an
  overlap so a fact straddling two chunks is whole in at least one of them.
* ``macro`` (~5,000 characters): long stretches for themes and summaries.

Chunks never span two conversations, and everything is deterministic: the same
user, conversation and config give the same ids and the same contents, so a
re-ingest upserts rows in place instead of duplicating them.

This runs on every conversation of exports of hundreds of megabytes, so it is
linear in the text size: pieces are slices of the original text, lines are
collected in lists and joined once, and no loop rescans text it has passed.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple

from soulprint.domain.tokens import CHARS_PER_TOKEN, estimate_tokens
from soulprint.models.domain import Chunk, Conversation

# Fixed namespace for chunk ids. Never change it: every stored chunk id (and so
# every upsert on re-ingest) derives from it.
NAMESPACE = uuid.UUID("0f78ba61-e081-4c3e-9c36-a49d6ca9feda")

# Longest title kept in a chunk's header line; a pasted paragraph as a title
# must not eat the chunk's budget.
_MAX_TITLE_CHARS = 200

_ROLE_LABELS = {"user": "User", "assistant": "Assistant", "tool": "Tool", "system": "System"}

# Micro chunks hold what was *said* in the conversation; tool output and system
# prompts are noise at that granularity (they stay in medium and macro).
_MICRO_ROLES = frozenset({"user", "assistant"})

# A sentence ends at ., ! or ? (possibly repeated, possibly followed by closing
# quotes/brackets) followed by whitespace, or at a line break. The match covers
# the trailing whitespace, so ``match.end()`` is where the next sentence starts.
_BOUNDARY = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*\s+|\n\s*")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class ChunkingConfig:
    # micro: characters per chunk; one message's sentences only, sized so a
    # name, date or precise fact dominates its embedding.
    micro_chars: int = 200
    # medium: estimated tokens per chunk; the unit for retrieval and fact
    # extraction (fits comfortably in an extraction prompt).
    medium_tokens: int = 2000
    # medium: estimated tokens repeated from the end of the previous medium
    # chunk, so a fact cut at a chunk boundary is whole in one of them.
    medium_overlap_tokens: int = 200
    # macro: characters per chunk; long stretches for themes and summaries.
    macro_chars: int = 5000

    def __post_init__(self) -> None:
        if min(self.micro_chars, self.medium_tokens, self.macro_chars) < 20:
            raise ValueError("chunk sizes must be at least 20")
        if not 0 <= self.medium_overlap_tokens <= self.medium_tokens // 2:
            raise ValueError("medium overlap must be between 0 and half the medium size")


def chunk_id(user_id: str, conversation_id: str, tier: str, index: int) -> str:
    """Deterministic chunk id; the unit separator cannot occur in normal ids."""
    return str(uuid.uuid5(NAMESPACE, f"{user_id}\x1f{conversation_id}\x1f{tier}\x1f{index}"))


def role_label(role: str) -> str:
    """Label rendered in front of a message's text ("User: ...")."""
    return _ROLE_LABELS.get(role) or (role.capitalize() if role else "Unknown")


# --------------------------------------------------------------------------
# Measuring: medium budgets are in tokens, macro budgets in characters. Both
# are expressed as a cost per *line*, counting the newline that joins it to
# the next, so the sum of the line costs is an upper bound on the cost of the
# joined content and a chunk packed within budget really is within budget.


class _Measure(NamedTuple):
    cost: Callable[[int], int]  # line length in chars -> cost (incl. newline)
    max_chars: Callable[[int], int]  # cost -> longest line that costs no more


_TOKENS = _Measure(
    cost=lambda n: (n + 1 + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN,
    max_chars=lambda c: c * CHARS_PER_TOKEN - 1,
)
_CHARS = _Measure(cost=lambda n: n + 1, max_chars=lambda c: c - 1)


@dataclass(slots=True)
class _Msg:
    """A message prepared once and shared by the three tiers."""

    id: str
    role: str
    label: str
    text: str  # stripped
    time: float | None
    _ends: list[int] | None = None

    @property
    def ends(self) -> list[int]:
        # Sentence boundaries are only needed for messages too long for a tier;
        # computed at most once even when several tiers have to cut the text.
        if self._ends is None:
            self._ends = [m.end() for m in _BOUNDARY.finditer(self.text)]
        return self._ends


@dataclass(slots=True)
class _Unit:
    """One rendered line of a medium/macro chunk: a message or a piece of one."""

    message_id: str
    time: float | None
    label: str
    text: str
    cost: int

    @property
    def line(self) -> str:
        return f"{self.label}: {self.text}"


def _unit(msg_id: str, time: float | None, label: str, text: str, measure: _Measure) -> _Unit:
    return _Unit(msg_id, time, label, text, measure.cost(len(label) + 2 + len(text)))


# --------------------------------------------------------------------------
# Cutting text


def _skip_space(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i].isspace():
        i += 1
    return i


def _split_text(text: str, limit: int, ends: list[int]) -> list[str]:
    """Cut ``text`` into stripped pieces of at most ``limit`` characters.

    Each piece is as many whole sentences as fit. A sentence longer than the
    limit is cut at the last whitespace of the window, or hard-cut when the
    window has none (a URL, base64, a minified file). ``ends`` are the sentence
    boundaries of ``text`` (see ``_BOUNDARY``), in increasing order.
    """
    limit = max(limit, 1)
    n = len(text)
    pieces: list[str] = []
    j = 0  # ends[:j] are <= the current window's end; only ever moves forward
    start = _skip_space(text, 0)
    while start < n:
        if n - start <= limit:
            pieces.append(text[start:].rstrip())
            break
        window_end = start + limit
        while j < len(ends) and ends[j] <= window_end:
            j += 1
        if j and ends[j - 1] > start:
            cut = ends[j - 1]  # furthest sentence boundary inside the window
        else:
            # Only accept a whitespace in the last three quarters of the window:
            # a cut right after ``start`` would make a tiny piece, and rescanning
            # almost the whole window for tiny advances would go quadratic.
            low = start + max(limit // 4, 1)
            cut = max(
                text.rfind(" ", low, window_end + 1),
                text.rfind("\n", low, window_end + 1),
                text.rfind("\t", low, window_end + 1),
            )
            if cut <= start:
                cut = window_end
        piece = text[start:cut].rstrip()
        if piece:
            pieces.append(piece)
        start = _skip_space(text, cut)
    return pieces


def _tail(text: str, max_chars: int) -> str:
    """The end of ``text``, at most ``max_chars`` long, starting at a sentence
    (else at a word, else wherever the budget says): the overlap carried into
    the next medium chunk when the previous chunk ended on a long message."""
    if max_chars <= 0:
        return ""
    if len(text) <= max_chars:
        return text
    pos = len(text) - max_chars
    for pattern in (_BOUNDARY, _WHITESPACE):
        m = pattern.search(text, pos)
        if m and m.end() < len(text):
            return text[m.end() :].strip()
    return text[pos:].strip()


# --------------------------------------------------------------------------
# Tiers


def _micro_pieces(msgs: list[_Msg], micro_chars: int) -> Iterator[tuple[_Msg, str]]:
    """One message's pieces at a time: together they are a copy of the whole text."""
    for msg in msgs:
        if msg.role not in _MICRO_ROLES:
            continue
        # The label is part of the content, so it comes out of the budget.
        limit = micro_chars - len(msg.label) - 2
        if len(msg.text) <= limit:
            yield msg, msg.text
        else:
            for piece in _split_text(msg.text, limit, msg.ends):
                yield msg, piece


def _units(msgs: list[_Msg], piece_cost: int, measure: _Measure) -> list[_Unit]:
    """Whole messages as lines; a message costing more than ``piece_cost`` is
    cut into several lines, each labelled so the speaker stays clear."""
    units: list[_Unit] = []
    for msg in msgs:
        unit = _unit(msg.id, msg.time, msg.label, msg.text, measure)
        if unit.cost <= piece_cost:
            units.append(unit)
            continue
        limit = measure.max_chars(piece_cost) - len(msg.label) - 2
        for piece in _split_text(msg.text, limit, msg.ends):
            units.append(_unit(msg.id, msg.time, msg.label, piece, measure))
    return units


def _overlap_tail(fresh: list[_Unit], overlap: int, measure: _Measure) -> list[_Unit]:
    """The last lines of a chunk worth at most ``overlap``, to repeat at the
    start of the next chunk. Whole lines first; when the next line back is too
    big, its closing sentences fill the rest (marked with an ellipsis)."""
    tail: list[_Unit] = []
    total = 0
    for unit in reversed(fresh):
        if total + unit.cost > overlap:
            room = measure.max_chars(overlap - total) - len(unit.label) - 3  # ": " + "…"
            text = _tail(unit.text, room)
            if text:
                tail.append(_unit(unit.message_id, unit.time, unit.label, "\u2026" + text, measure))
            break
        tail.append(unit)
        total += unit.cost
    tail.reverse()
    return tail


def _pack(units: list[_Unit], budget: int, overlap: int, header_cost: int, measure: _Measure) -> list[list[_Unit]]:
    """Greedy packing of lines into chunks of at most ``budget`` (including the
    header), each chunk starting with the overlap tail of the previous one."""
    groups: list[list[_Unit]] = []
    cur: list[_Unit] = []
    cost = header_cost
    fresh = 0  # cur[:fresh] is overlap from the previous chunk, cur[fresh:] is new
    for unit in units:
        if len(cur) > fresh and cost + unit.cost > budget:
            groups.append(cur)
            cur = _overlap_tail(cur[fresh:], overlap, measure) if overlap > 0 else []
            fresh = len(cur)
            cost = header_cost + sum(u.cost for u in cur)
        # Overlap is a nicety: drop it rather than exceed the budget.
        while fresh and cost + unit.cost > budget:
            cost -= cur[0].cost
            del cur[0]
            fresh -= 1
        cur.append(unit)
        cost += unit.cost
    if len(cur) > fresh:
        groups.append(cur)
    return groups


def chunk_conversation(user_id: str, conv: Conversation, config: ChunkingConfig = ChunkingConfig()) -> list[Chunk]:
    """All micro, medium and macro chunks of one conversation, in that order,
    each tier indexed from 0 in conversation order."""
    return list(iter_chunks(user_id, conv, config))


def iter_chunks(user_id: str, conv: Conversation, config: ChunkingConfig = ChunkingConfig()) -> Iterator[Chunk]:
    """The chunks of ``chunk_conversation`` one at a time: a conversation of tens of MB
    need not have its three tiers (three times its text) in memory at once."""
    msgs = [
        _Msg(m.id, m.role, role_label(m.role), text, m.time)
        for m in conv.messages
        if (text := m.text.strip())
    ]
    if not msgs:
        return
    # Messages without a time fall back on the conversation's own times, so
    # that recency decisions still see something.
    fallback_time = conv.updated_at if conv.updated_at is not None else conv.created_at

    # Medium and macro chunks start with the title: a chunk retrieved on its own
    # then still says what the conversation was about ("Trip to Lisbon" gives
    # meaning to "the second hotel"). Whitespace is collapsed so it stays one
    # line. Micro chunks skip it: it would dominate 200 characters.
    title = " ".join((conv.title or "").split())[:_MAX_TITLE_CHARS]
    header = f"Conversation: {title}" if title else ""

    def make(tier: str, index: int, lines: list[str], message_ids: list[str], times: list[float | None]) -> Chunk:
        content = "\n".join(lines)
        known = [t for t in times if t is not None]
        return Chunk(
            id=chunk_id(user_id, conv.id, tier, index),
            conversation_id=conv.id,
            tier=tier,
            index=index,
            content=content,
            token_count=estimate_tokens(content),
            message_ids=list(dict.fromkeys(message_ids)),  # ordered, no duplicates
            newest_time=max(known) if known else fallback_time,
        )

    for index, (msg, piece) in enumerate(_micro_pieces(msgs, config.micro_chars)):
        yield make("micro", index, [f"{msg.label}: {piece}"], [msg.id], [msg.time])

    tiers = (
        ("medium", config.medium_tokens, config.medium_overlap_tokens, _TOKENS),
        ("macro", config.macro_chars, 0, _CHARS),
    )
    for tier, budget, overlap, measure in tiers:
        header_cost = measure.cost(len(header)) if header else 0
        # Pieces of a cut message leave room for the header and the overlap, so
        # a piece always fits in a chunk of its own behind them.
        piece_cost = max(budget - header_cost - overlap, budget // 4)
        units = _units(msgs, piece_cost, measure)
        for index, group in enumerate(_pack(units, budget, overlap, header_cost, measure)):
            lines = [header] if header else []
            lines.extend(u.line for u in group)
            yield make(tier, index, lines, [u.message_id for u in group], [u.time for u in group])
