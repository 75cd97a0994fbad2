"""The MEMORY document and the version-2 sections, from consolidated facts.

MEMORY is written by the model as five lists of bullets (a forced tool call)
and rendered to markdown here, so the five headings are always there, in
order, and the length cap is ours to enforce. :func:`memory_from_facts` is
the deterministic rendering used when no model is available.

The sections are then rewritten (``sections_v2``) from MEMORY plus a sample
of the person's richest conversations, trimmed to fit one prompt.

MEMORY and the v2 sections are read together (the workspace, the query
service's prompt), so no statement is written twice: MEMORY's five lists hold
each statement once, and a section's bullet that repeats MEMORY or an earlier
section is dropped (:func:`distinct_sections`). "Repeats" is
:func:`soulprint.domain.statements.restates`.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from soulprint.domain.consolidation import DEFAULT_BUDGET_TOKENS, render_facts, truncate_to_budget
from soulprint.domain.prompts import memory as memory_prompt
from soulprint.domain.prompts import sections_v2 as sections_v2_prompt
from soulprint.domain.prompts.memory import KEY_OF_CATEGORY, MEMORY, MEMORY_KEYS, MEMORY_SECTIONS, MemoryAnswer
from soulprint.domain.prompts.sections_v2 import SECTIONS_V2, render_sections_v2
from soulprint.domain.sampling import SampledConversation, render_sample
from soulprint.domain.statements import StatementSet
from soulprint.domain.tokens import CHARS_PER_TOKEN, estimate_tokens
from soulprint.models.facts import ConsolidatedFact
from soulprint.models.llm import LLMRequest, as_answer
from soulprint.models.sections import OFFLINE_NOTE, SECTION_ORDER, SECTIONS_SCHEMA, Sections
from soulprint.models.text import one_line

_KEY_OF_HEADING = {h.lower(): k for h, k in zip(MEMORY_SECTIONS, MEMORY_KEYS)}
_HEADING_OF_KEY = dict(zip(MEMORY_KEYS, MEMORY_SECTIONS))

# MEMORY is read at the start of every conversation: it must stay short.
MEMORY_MAX_TOKENS = 3500
MAX_BULLET_CHARS = 500
# The deterministic rendering keeps this many facts per section before the
# token cap trims further (facts arrive most-mentioned first).
_FALLBACK_BULLETS = 40
EMPTY_SECTION = "_Nothing recorded yet._"

SECTIONS_V2_BUDGET_TOKENS = 120_000

# --------------------------------------------------------------------------- memory request


def memory_request(
    user_id: str,
    job_id: str | None,
    facts: Sequence[ConsolidatedFact],
    *,
    max_tokens: int = 4000,
    model_role: str = MEMORY.model_role,
    input_budget_tokens: int = DEFAULT_BUDGET_TOKENS,
) -> LLMRequest:
    """The MEMORY-writing request. ``max_tokens`` bounds the answer.

    Facts beyond ``input_budget_tokens`` (rendered) are left out, least
    mentioned and oldest first; consolidation normally keeps them within it.
    """
    kept, _ = truncate_to_budget(list(facts), input_budget_tokens)
    payload = {
        "user_id": user_id,
        # The offline rules need the facts, not their sources.
        "facts": [{k: v for k, v in f.to_dict().items() if k != "sources"} for f in kept],
    }
    return memory_prompt.memory_request(user_id, job_id, len(kept), render_facts(kept) or "(none)", payload,
                                        max_tokens=max_tokens, model_role=model_role)


# --------------------------------------------------------------------------- rendering


_BULLET_PREFIX = re.compile(r"^\s*(?:[-*•·]+|\d+[.)])\s*")


def _clean_bullet(v: str) -> str:
    return one_line(_BULLET_PREFIX.sub("", v), MAX_BULLET_CHARS)


def _sections_of(answer: MemoryAnswer | None) -> dict[str, list[str]]:
    """Bullets per key from a validated answer."""
    raw: dict[str, list[str]] = answer.sections.model_dump() if answer is not None else {}
    return {key: [b for b in (_clean_bullet(item) for item in raw.get(key) or ()) if b] for key in MEMORY_KEYS}


# The dating fact_bullet appends: "(mentioned 2024-03–2025-12; before: ...)".
_SEEN_SUFFIX = re.compile(r"\s*\((?:[^()]*\bmentioned\b[^()]*|[^()]*\bbefore:[^()]*)\)\s*$")


def bullet_statement(bullet: str) -> str:
    """A MEMORY bullet without its dating: the statement itself."""
    return _SEEN_SUFFIX.sub("", bullet)


def _distinct(sections: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """The five lists with every statement once: a repeat (in any list, in
    other person or with less said) gives way to its first occurrence."""
    written = StatementSet()
    return {k: [b for b in sections.get(k) or () if written.add(bullet_statement(b))] for k in MEMORY_KEYS}


def _render(sections: Mapping[str, Sequence[str]], offline: bool) -> str:
    lines = ["# MEMORY", ""]
    if offline:
        lines += [OFFLINE_NOTE, ""]
    for key in MEMORY_KEYS:
        lines.append(f"## {_HEADING_OF_KEY[key]}")
        bullets = sections.get(key) or []
        lines += [f"- {b}" for b in bullets] if bullets else [EMPTY_SECTION]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _fit(sections: Mapping[str, Sequence[str]], max_tokens: int, offline: bool) -> dict[str, list[str]]:
    """Drop bullets until the document is within ``max_tokens``: always the
    last (least important) bullet of the longest list, so every section keeps
    its best bullets and the result is deterministic."""
    secs = {k: list(sections.get(k) or []) for k in MEMORY_KEYS}
    limit = max_tokens * CHARS_PER_TOKEN
    length = len(_render(secs, offline))
    while length > limit and any(secs.values()):
        key = max((k for k in MEMORY_KEYS if secs[k]), key=lambda k: (len(secs[k]), MEMORY_KEYS.index(k)))
        bullet = secs[key].pop()
        length -= len(bullet) + 3  # "- ", the bullet, its newline
        if not secs[key]:
            length = len(_render(secs, offline))  # the placeholder line appears
    return secs


def render_memory(sections: Mapping[str, Sequence[str]], *, offline: bool = False,
                  max_tokens: int = MEMORY_MAX_TOKENS) -> str:
    """Markdown: "# MEMORY", then the five "## " headings in order, each statement
    once, capped at ``max_tokens``."""
    return _render(_fit(_distinct(sections), max_tokens, offline), offline)


def memory_from_result(answer: MemoryAnswer | Mapping[str, Any] | None, *, offline: bool = False,
                       max_tokens: int = MEMORY_MAX_TOKENS) -> str:
    """The MEMORY markdown from the model's (or offline rules') validated answer
    (a mapping is validated here; an invalid one gives the empty document)."""
    return render_memory(_sections_of(as_answer(MemoryAnswer, answer)), offline=offline, max_tokens=max_tokens)


def _month(t: float | None) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m") if t is not None else ""


def fact_bullet(f: ConsolidatedFact) -> str:
    """A fact as a dated bullet: "Lives in Berlin. (mentioned 2023-08–2025-01; before: Lives in Lisbon, until 2023-08)"."""
    text = f.text.strip()
    parts: list[str] = []
    if f.date and f.date not in text:
        parts.append(f.date)
    a, b = _month(f.first_seen), _month(f.last_seen)
    if a or b:
        parts.append(f"mentioned {a or b}" if not (a and b) or a == b else f"mentioned {a}–{b}")
    if f.history:
        h = f.history[-1]
        until = _month(h.get("until"))
        prev = str(h.get("text") or "").strip().rstrip(".")
        if prev:
            parts.append(f"before: {prev}" + (f", until {until}" if until else ""))
    return f"{text} ({'; '.join(parts)})" if parts else text


def memory_sections_from_facts(facts: Sequence[ConsolidatedFact]) -> dict[str, list[str]]:
    """Deterministic bullets per MEMORY key: each category's facts in the
    order given (consolidation puts the most mentioned first)."""
    out: dict[str, list[str]] = {k: [] for k in MEMORY_KEYS}
    for f in facts:
        key = KEY_OF_CATEGORY.get(f.category)
        if key is not None and len(out[key]) < _FALLBACK_BULLETS:
            out[key].append(_clean_bullet(fact_bullet(f)))
    return out


def memory_from_facts(facts: Sequence[ConsolidatedFact], *, offline: bool = True,
                      max_tokens: int = MEMORY_MAX_TOKENS) -> str:
    """MEMORY without a model: the facts themselves, dated, labelled offline."""
    return render_memory(memory_sections_from_facts(facts), offline=offline, max_tokens=max_tokens)


# --------------------------------------------------------------------------- sections v2


def _profile_dict(profile: Any) -> dict[str, Any]:
    """The quick pass's profile shape, from a mapping or a ProfileHints."""
    if profile is None:
        return {}
    if isinstance(profile, Mapping):
        return dict(profile)
    return {"user_profile": getattr(profile, "user_profile", None),
            "user_instructions": getattr(profile, "user_instructions", None),
            "saved_memory": list(getattr(profile, "saved_memory", None) or [])}


def _sections_v2_user(user_id: str, profile: Mapping[str, Any], memory_md: str,
                      samples: Sequence[SampledConversation]) -> str:
    return render_sections_v2(user_id, profile, memory_md, len(samples), render_sample(list(samples)))


def fit_samples(user_id: str, memory_md: str, samples: Sequence[SampledConversation], profile: Mapping[str, Any],
                budget_tokens: int = SECTIONS_V2_BUDGET_TOKENS) -> list[SampledConversation]:
    """The samples that keep the sections_v2 prompt (system, tool schema and
    user turn) within ``budget_tokens``: the lowest-scored go first, the rest
    keep their order."""
    samples = list(samples)
    overhead = estimate_tokens(SECTIONS_V2.system) + estimate_tokens(json.dumps(SECTIONS_SCHEMA))

    def total(chosen: list[SampledConversation]) -> int:
        return overhead + estimate_tokens(_sections_v2_user(user_id, profile, memory_md, chosen))

    # Fast pass on per-sample costs (+1: the blank line between two samples)...
    costs = [estimate_tokens(render_sample([s])) + 1 for s in samples]
    used = total([]) + sum(costs)
    keep = set(range(len(samples)))
    for i in sorted(range(len(samples)), key=lambda i: (samples[i].score, -i)):
        if used <= budget_tokens:
            break
        keep.discard(i)
        used -= costs[i]
    kept = [s for i, s in enumerate(samples) if i in keep]
    # ...then the real rendering decides (the estimates of parts round up).
    while kept and total(kept) > budget_tokens:
        kept.pop(min(range(len(kept)), key=lambda i: (kept[i].score, -i)))
    return kept


def _sample_time(s: SampledConversation) -> float | None:
    return s.newest_time if s.newest_time is not None else (s.updated_at or s.created_at)


def sections_v2_request(
    user_id: str,
    job_id: str | None,
    memory_md: str,
    samples: Sequence[SampledConversation],
    profile: Mapping[str, Any] | Any = None,
    *,
    budget_tokens: int = SECTIONS_V2_BUDGET_TOKENS,
    model_role: str = SECTIONS_V2.model_role,
    max_tokens: int = SECTIONS_V2.max_tokens,
) -> LLMRequest:
    """The version-2 sections request: MEMORY plus as much of the sample as fits ``budget_tokens``."""
    prof = _profile_dict(profile)
    kept = fit_samples(user_id, memory_md, samples, prof, budget_tokens)
    user = _sections_v2_user(user_id, prof, memory_md, kept)
    payload = {
        "user_id": user_id,
        "profile": prof,
        "memory": memory_md,
        # The quick pass's sample shape, so the offline rules read both alike.
        "samples": [{"conversation_id": s.conversation_id, "title": s.title, "excerpt": s.excerpt,
                     "created_at": _sample_time(s)} for s in kept],
    }
    return sections_v2_prompt.sections_v2_request(user, payload, job_id, model_role=model_role,
                                                  max_tokens=max_tokens)


def memory_statements(memory_md: str) -> dict[str, list[str]]:
    """MEMORY's statements per key, without their dating (what the sections must not repeat)."""
    return {k: [bullet_statement(b) for b in v] for k, v in parse_memory_markdown(memory_md).items()}


# Which section keeps a statement two of them make: the ones about the person
# and their work first, then SOUL and IDENTITY, which draw on them ("Their
# goals come first: <a goal>" gives way to the goal in USER).
_KEEP_ORDER = sorted(SECTION_ORDER, key=lambda name: name in ("soul", "identity"))  # stable: USER, AGENTS, TOOLS, ...


def distinct_sections(sections: Sections, memory_md: str) -> Sections:
    """``sections`` without a list item that repeats a MEMORY statement or one
    kept before it (sections in ``_KEEP_ORDER``, fields in order). Strings
    (summaries, names) are prose and stay as they are."""
    written = StatementSet()
    for bullets in memory_statements(memory_md).values():
        for b in bullets:
            written.add(b)
    d = sections.to_dict()
    for name in _KEEP_ORDER:
        part = d[name]
        for field_name, value in part.items():
            if isinstance(value, list):
                part[field_name] = [item for item in value if written.add(item)]
    return Sections.from_dict(d, offline=sections.offline)


def sections_v2_from_result(result: Any, memory_md: str) -> Sections:
    """The v2 sections of a sections_v2 ``LLMResult``, never repeating MEMORY or themselves."""
    return distinct_sections(Sections.from_result(result), memory_md)


def parse_memory_markdown(memory_md: str) -> dict[str, list[str]]:
    """Bullets per MEMORY key from a rendered MEMORY document (for the offline rules)."""
    out: dict[str, list[str]] = {k: [] for k in MEMORY_KEYS}
    key: str | None = None
    for line in (memory_md or "").splitlines():
        if line.startswith("## "):
            key = _KEY_OF_HEADING.get(line[3:].strip().lower())
        elif key is not None and line.startswith("- "):
            b = line[2:].strip()
            if b:
                out[key].append(b)
    return out
