"""Collects ProfileHints across an export, keeping the newest value of each."""

from __future__ import annotations

import re

from ...models.domain import ProfileHints
from .nul import NulStripper

MAX_MEMORY_ENTRIES = 2000  # saved memory is a short list; bound it all the same
_NUMBERING = re.compile(r"^\s*(?:\d+[.)]|[-*\u2022])\s+")


class HintCollector:
    """Custom instructions repeat in every conversation and change over time:
    the value seen in the most recent conversation wins (file order breaks ties).
    """

    __slots__ = ("profile", "_when", "_raw", "_nul")

    def __init__(self, nul: NulStripper) -> None:
        self.profile = ProfileHints()
        self._nul = nul
        self._when: dict[str, float] = {}
        self._raw: dict[str, str] = {}  # last raw value per field: repeats skip the unwrapping

    def _newer(self, field: str, when: float | None) -> bool:
        t = when if when is not None else float("-inf")
        if field in self._when and t < self._when[field]:
            return False
        self._when[field] = t
        return True

    def offer(self, field: str, value, when: float | None) -> None:
        """field: "user_profile" | "user_instructions"."""
        if not value or not isinstance(value, str):
            return
        if value == self._raw.get(field):  # the same text as before (every conversation repeats it)
            self._newer(field, when)
            return
        text = unwrap_instructions(self._nul.clean(value))
        if text and self._newer(field, when):
            self._raw[field] = value
            setattr(self.profile, field, text)

    def offer_memory(self, entries: list[str], when: float | None) -> None:
        """A saved-memory snapshot; the newest conversation's snapshot replaces older ones."""
        if entries and self._newer("saved_memory", when):
            clean = self._nul.clean
            self.profile.saved_memory = [e for e in map(clean, entries[:MAX_MEMORY_ENTRIES]) if e]


def unwrap_instructions(text: str) -> str:
    """Custom instructions as the person typed them.

    ChatGPT's ``user_editable_context`` wraps them: "The user provided the
    additional info about how they would like you to respond:\\n```...```".
    """
    text = text.strip()
    if text.startswith("The user provided"):
        start, end = text.find("```"), text.rfind("```")
        if 0 <= start < end:
            inner = text[start + 3:end].strip()
            if inner:
                return inner
    return text


def memory_entries(content: dict) -> list[str]:
    """Saved-memory entries of a ``model_editable_context`` message.

    ``model_set_context`` is one text with an entry per line ("1. [2024-05-01].
    Likes hiking."); newer exports may also carry a list of entries, as strings
    or objects with a text field.
    """
    out: list[str] = []
    seen: set[str] = set()

    def add(value) -> None:
        if isinstance(value, dict):
            value = next((value[k] for k in ("content", "text", "value", "memory") if isinstance(value.get(k), str)), None)
        if not isinstance(value, str):
            return
        for line in value.splitlines():
            line = _NUMBERING.sub("", line).strip()
            if line and line not in seen:
                seen.add(line)
                out.append(line)

    for key, value in content.items():
        if key == "content_type":
            continue
        if isinstance(value, str) and key == "model_set_context":
            add(value)
        elif isinstance(value, list) and key in ("model_set_context", "memories", "memory", "entries", "memory_entries"):
            for entry in value:
                add(entry)
    return out
