"""Rendering shared by the prompts: the person's profile and sampled conversations as prompt text."""

from __future__ import annotations

import html
from datetime import datetime, timezone
from typing import Any, Mapping


def fmt_time(v: Any) -> str:
    if isinstance(v, (int, float)):
        return datetime.fromtimestamp(v, tz=timezone.utc).strftime("%Y-%m-%d")
    return str(v) if v else ""


def attr(v: Any) -> str:
    """A value as an XML attribute's text."""
    return html.escape(str(v), quote=True)


def render_profile(profile: Mapping[str, Any] | None) -> str:
    p = profile or {}
    lines: list[str] = []
    if p.get("user_profile"):
        lines.append(f"About me (written by the person): {p['user_profile']}")
    if p.get("user_instructions"):
        lines.append(f"How I want responses (written by the person): {p['user_instructions']}")
    memory = [m for m in p.get("saved_memory") or () if m]
    if memory:
        lines.append("Saved memory (kept by their previous assistant):")
        lines.extend(f"- {m}" for m in memory)
    return "\n".join(lines) if lines else "(none)"


def render_conversations(samples: list[Mapping[str, Any]]) -> str:
    out = []
    for i, s in enumerate(samples, 1):
        attrs = f'index="{i}"'
        if s.get("title"):
            attrs += f' title="{attr(s["title"])}"'
        when = fmt_time(s.get("created_at"))
        if when:
            attrs += f' date="{attr(when)}"'
        out.append(f"<conversation {attrs}>\n{(s.get('excerpt') or '').strip()}\n</conversation>")
    return "\n".join(out) if out else "(none)"
