"""Turning a sample into quick-pass requests, and sections into what is stored.

Pure: the quick agent calls these around its one (or two) LLM calls.
"""

from __future__ import annotations

from typing import Any

from soulprint.domain.prompts.quick_sections import quick_sections_request
from soulprint.domain.tokens import estimate_tokens
from soulprint.models.llm import LLMRequest
from soulprint.models.sections import FILE_NAMES, SECTION_ORDER, Sections

# Above this many sample tokens the quick pass splits the sample over two
# parallel calls: each answer comes back sooner than one long one would.
SPLIT_ABOVE_TOKENS = 30_000


def quick_requests(user_id: str, job_id: str, samples: list[dict], profile: dict) -> list[LLMRequest]:
    total = sum(estimate_tokens(s.get("excerpt") or "") for s in samples)
    if total <= SPLIT_ABOVE_TOKENS or len(samples) < 2:
        parts = [samples]
    else:
        # Alternate so both halves mix recent and older conversations.
        parts = [samples[0::2], samples[1::2]]
    requests = []
    for i, part in enumerate(parts, 1):
        payload: dict[str, Any] = {"user_id": user_id, "samples": part, "profile": profile}
        if len(parts) > 1:
            payload["part"] = [i, len(parts)]
        requests.append(quick_sections_request(payload, job_id=job_id, stage="quick_pass"))
    return requests


def rendered_sections(sections: Sections) -> dict[str, str]:
    """The five markdown documents, by their workspace names (SOUL, IDENTITY, ...)."""
    return {FILE_NAMES[name]: sections.render(name) for name in SECTION_ORDER}
