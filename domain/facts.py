"""Fact extraction: pack medium chunks into LLM requests, read the answers back.

The facts agent loads chunk texts, calls :func:`build_fact_requests`, sends
each request, and turns each answer into :class:`Fact` records with
:func:`parse_fact_answer` (which also counts the facts it could not
attribute). Both are pure.

Small chunks of one conversation are packed several to a request because the
system prompt is a fixed cost per call (cached, but still billed at a tenth)
and the model reads related chunks of one conversation better together. A
request of :func:`build_fact_requests` never mixes conversations: which
conversations share a facts batch depends on timing, and packing across them
made two runs of the same export send different requests (paying again, and
getting different facts). Packed per conversation, a conversation's requests
are a function of its chunks alone, so a re-import's unchanged conversations
hit the response cache.

A small conversation (:func:`is_small`: its chunks would fill at most half a
request) would still cost a request of its own, and an export of many short
conversations would send one request per conversation. Those are packed
together instead, once the job's chunking is complete, by
:class:`RequestPacker`: whole conversations in conversation-id order
over every small conversation of the job still without facts. That order is
the job's, not a batch's, so a redelivery sends the same requests again (a
pack either got its facts or is sent again whole, and greedy packing of what
is left gives the packs that were left). Each chunk is labelled
c1, c2, ... in the prompt and every fact names its chunk, so a fact is
attributed to the chunk it came from, not to the request; the request's tool
schema allows only its own refs (domain/prompts/facts.py).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

from soulprint.domain.prompts.facts import FactsAnswer, facts_request, render_fact_chunk
from soulprint.domain.tokens import estimate_tokens
from soulprint.models.facts import Fact, fact_id
from soulprint.models.llm import LLMRequest, as_answer
from soulprint.models.text import one_line

# A fact is one sentence; a longer "fact" is a paragraph the model copied.
MAX_TEXT_CHARS = 300
MAX_SUBJECT_CHARS = 80
MAX_FIELD_CHARS = 120
# More than this from one ~2,000-token chunk is the model listing everything.
MAX_FACTS_PER_CHUNK = 40


@dataclass(slots=True)
class ChunkForExtraction:
    chunk_id: str
    conversation_id: str
    title: str | None
    content: str
    message_ids: list[str] = field(default_factory=list)
    message_time: float | None = None  # newest message of the chunk (unix seconds)
    token_count: int = 0  # as stored with the chunk; re-estimated when 0
    index: int = 0  # position among the conversation's medium chunks


def _date(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d")


def _body(chunk: ChunkForExtraction) -> str:
    """The chunk's text without its "Conversation: <title>" header line: the
    title is already an attribute of the block, so repeating it costs tokens."""
    content = chunk.content.strip()
    first, sep, rest = content.partition("\n")
    if first.startswith("Conversation: ") and sep:
        return rest.strip()
    return content


def _block(ref: str, chunk: ChunkForExtraction) -> str:
    title = " ".join((chunk.title or "").split())[:200] or None
    return render_fact_chunk(ref, title, _date(chunk.message_time), _body(chunk))


def _cost(chunk: ChunkForExtraction) -> int:
    # Rendered cost, header and tags included: what the budget is about. The
    # stored token_count only covers the content, so it is not used here.
    return estimate_tokens(_block("c00", chunk)) + 1


def _order_key(chunk: ChunkForExtraction) -> tuple[Any, ...]:
    # One conversation's chunks together and in their order: the model reads a
    # conversation's consecutive chunks better side by side, a fixed order
    # makes the prompts (and so the response cache keys) reproducible, and
    # packing from the conversation's start keeps the first requests of a
    # conversation that only grew (new messages at its end) as they were.
    return (chunk.conversation_id, chunk.index, chunk.chunk_id)


def _request(user_id: str, job_id: str, group: list[ChunkForExtraction]) -> LLMRequest:
    refs = [f"c{i}" for i in range(1, len(group) + 1)]
    payload = {
        "user_id": user_id,
        "chunks": [
            {"ref": ref, "chunk_id": c.chunk_id, "title": c.title, "content": _body(c), "message_time": c.message_time}
            for ref, c in zip(refs, group)
        ],
    }
    return facts_request(job_id, [_block(ref, c) for ref, c in zip(refs, group)], payload)


MAX_CHUNKS_PER_REQUEST = 8
SMALL_SHARE = 2  # a small conversation fills at most 1/SMALL_SHARE of a request, in tokens and in chunks
SMALL_MAX_CHUNKS = MAX_CHUNKS_PER_REQUEST // SMALL_SHARE  # medium chunks of a small conversation, at most


def is_small(conversation: Sequence[ChunkForExtraction], *, token_budget: int = 6000,
             max_chunks_per_request: int = MAX_CHUNKS_PER_REQUEST) -> bool:
    """Whether a conversation (all its medium chunks) is packed with others rather than alone."""
    return (0 < len(conversation) <= max_chunks_per_request // SMALL_SHARE
            and sum(_cost(c) for c in conversation) <= token_budget // SMALL_SHARE)


def by_conversation(chunks: Sequence[ChunkForExtraction]) -> dict[str, list[ChunkForExtraction]]:
    """The chunks grouped by conversation, each group in its order, conversations in id order."""
    groups: dict[str, list[ChunkForExtraction]] = {}
    for c in sorted(chunks, key=_order_key):
        group = groups.setdefault(c.conversation_id, [])
        if not group or group[-1].chunk_id != c.chunk_id:
            group.append(c)
    return groups


class RequestPacker:
    """Greedy packing into requests: units (a chunk, or a small conversation's chunks, never split) go
    into the open request while it stays within ``token_budget`` and ``max_chunks_per_request``; a
    unit that does not fit closes it (a unit bigger than the budget goes alone). Fed a unit at a
    time, so a job's many small conversations are read a page at a time."""

    def __init__(self, user_id: str, job_id: str, *, token_budget: int = 6000,
                 max_chunks_per_request: int = MAX_CHUNKS_PER_REQUEST) -> None:
        if max_chunks_per_request < 1:
            raise ValueError("max_chunks_per_request must be >= 1")
        self.user_id, self.job_id = user_id, job_id
        self.token_budget, self.max_chunks = token_budget, max_chunks_per_request
        self.group: list[ChunkForExtraction] = []
        self.used = 0

    def add(self, unit: Sequence[ChunkForExtraction]) -> list[tuple[LLMRequest, list[ChunkForExtraction]]]:
        """The unit (in its order) into the open request; the request it closed, if it did not fit there."""
        cost = sum(_cost(c) for c in unit)
        closed = []
        if self.group and (self.used + cost > self.token_budget
                           or len(self.group) + len(unit) > self.max_chunks):
            closed = self.close()
        self.group.extend(unit)
        self.used += cost
        return closed

    def close(self) -> list[tuple[LLMRequest, list[ChunkForExtraction]]]:
        """The open request (none if it is empty)."""
        group, self.group, self.used = self.group, [], 0
        return [(_request(self.user_id, self.job_id, group), group)] if group else []


def pack_small_conversations(
    user_id: str,
    job_id: str,
    conversations: Iterable[Sequence[ChunkForExtraction]],
    *,
    token_budget: int = 6000,
    max_chunks_per_request: int = MAX_CHUNKS_PER_REQUEST,
) -> list[tuple[LLMRequest, list[ChunkForExtraction]]]:
    """Every request of whole small ``conversations``, packed in the order given (RequestPacker)."""
    packer = RequestPacker(user_id, job_id, token_budget=token_budget, max_chunks_per_request=max_chunks_per_request)
    out = [pair for conversation in conversations
           for pair in packer.add(sorted(conversation, key=_order_key))]
    return out + packer.close()


def build_fact_requests(
    user_id: str,
    job_id: str,
    chunks: Sequence[ChunkForExtraction],
    *,
    token_budget: int = 6000,
    max_chunks_per_request: int = MAX_CHUNKS_PER_REQUEST,
) -> list[tuple[LLMRequest, list[ChunkForExtraction]]]:
    """Requests covering every chunk exactly once, each with its chunks in ref order.

    Each conversation's chunks are packed greedily, in their order, while the
    rendered excerpts stay within ``token_budget`` estimated tokens and
    ``max_chunks_per_request``; a chunk bigger than the budget goes alone. A
    request holds one conversation only, so a conversation's chunks give the
    same requests whatever else (and in whatever order) is passed with them.
    """
    packer = RequestPacker(user_id, job_id, token_budget=token_budget, max_chunks_per_request=max_chunks_per_request)
    out: list[tuple[LLMRequest, list[ChunkForExtraction]]] = []
    for conversation in by_conversation(chunks).values():  # each chunk once (a duplicate would yield twice)
        for c in conversation:
            out += packer.add([c])
        out += packer.close()  # a request holds one conversation
    return out


# --------------------------------------------------------------------------- reading answers


def _opt(v: str | None, limit: int = MAX_FIELD_CHARS) -> str | None:
    return (one_line(v, limit) or None) if v is not None else None


def normalise_subject(subject: str) -> str:
    """Lower-case key with collapsed whitespace and no decoration, so "Home City." and
    "home  city" are one subject. Keeps ":" (the "project: detail" convention)."""
    s = unicodedata.normalize("NFKC", subject).lower()
    s = re.sub(r"[\"'`“”‘’*_#\[\](){}]", "", s)
    s = " ".join(s.split()).strip(" .,;:-–—")
    s = re.sub(r"^(?:the|a|an|my|their|user'?s?|person'?s?)\s+", "", s)
    s = re.sub(r"\s*:\s*", ": ", s)
    return s[:MAX_SUBJECT_CHARS].rstrip()


@dataclass(slots=True)
class FactParse:
    """One answer's facts, and how many named a chunk that was not in its request."""

    facts: list[Fact]
    dropped: int = 0


def parse_fact_answer(
    user_id: str,
    job_id: str,
    data: FactsAnswer | Mapping[str, Any] | None,
    chunks: Sequence[ChunkForExtraction],
) -> FactParse:
    """Facts of one answer, attributed to their chunks.

    ``chunks`` is the list paired with the request (ref c1 is ``chunks[0]``);
    ``data`` is the validated answer (a mapping is validated here; an invalid
    one yields nothing). A fact naming a ref outside the request is dropped
    and counted: the request's schema forbids it, so a count above 0 means an
    answer that ignored the schema. Facts without text are skipped; within a
    chunk, repeated (category, text) pairs are skipped and ordinals run 0, 1,
    2... in answer order, so the same answer always gives the same fact ids.
    """
    answer = as_answer(FactsAnswer, data)
    refs = {f"c{i}": c for i, c in enumerate(chunks, 1)}
    per_chunk: dict[str, int] = {}
    seen: set[tuple[str, str, str]] = set()
    out = FactParse([])
    for item in answer.facts if answer is not None else ():
        chunk = refs.get(item.chunk)
        if chunk is None:
            out.dropped += 1
            continue
        text = one_line(item.text, MAX_TEXT_CHARS)
        if not text:
            continue
        # No slot given: the fact still counts, keyed by its own words
        # (it then only merges with restatements of itself).
        subject = normalise_subject(item.subject) or normalise_subject(" ".join(text.split()[:8]))
        dedup = (chunk.chunk_id, item.category, text.lower())
        if dedup in seen:
            continue
        ordinal = per_chunk.get(chunk.chunk_id, 0)
        if ordinal >= MAX_FACTS_PER_CHUNK:
            continue
        seen.add(dedup)
        per_chunk[chunk.chunk_id] = ordinal + 1
        out.facts.append(Fact(
            fact_id=fact_id(chunk.chunk_id, ordinal),
            user_id=user_id,
            job_id=job_id,
            chunk_id=chunk.chunk_id,
            conversation_id=chunk.conversation_id,
            message_ids=list(chunk.message_ids),
            category=item.category,
            text=text,
            subject=subject,
            project=_opt(item.project),
            date=_opt(item.date, 40),
            context=_opt(item.context),
            message_time=chunk.message_time,
            ordinal=ordinal,
        ))
    return out


def parse_fact_result(
    user_id: str,
    job_id: str,
    data: FactsAnswer | Mapping[str, Any] | None,
    chunks: Sequence[ChunkForExtraction],
) -> list[Fact]:
    """The facts of :func:`parse_fact_answer` alone."""
    return parse_fact_answer(user_id, job_id, data, chunks).facts
