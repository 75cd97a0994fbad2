"""Prompts as data: each prompt's text is pinned to its version, and the version is in the cache key.

A prompt's version is part of the response-cache key, so an edited prompt with
a bumped version never gets an answer cached for the old text. This test is
what makes the bump happen: editing a text changes its hash, and the failure
says to bump the version and re-pin.
"""

from __future__ import annotations

import hashlib

from soulprint.domain.prompts import PROMPTS
from soulprint.domain.prompts.quick_sections import quick_sections_request
from soulprint.models.llm import PromptSpec
from soulprint.services.llm.cache import cache_key

# task: (version, sha256 of system + "\x1f" + user_template, first 16 hex digits)
PINNED = {
    "quick_sections": (1, "3c891667539f1006"),
    "facts": (1, "a715cae5534c4879"),
    "reduce_facts": (1, "120b420b4798c011"),
    "memory": (1, "25078699fc6b26d1"),
    "sections_v2": (2, "37d398054200ecfc"),
    "answer": (1, "ba9abf12c3311e79"),
}


def text_hash(spec: PromptSpec) -> str:
    return hashlib.sha256(f"{spec.system}\x1f{spec.user_template}".encode()).hexdigest()[:16]


def test_every_prompt_is_pinned():
    assert set(PROMPTS) == set(PINNED)


def test_prompt_texts_match_their_versions():
    for task, spec in PROMPTS.items():
        version, digest = PINNED[task]
        actual = text_hash(spec)
        assert (spec.version, actual) == (version, digest), (
            f"the {task} prompt changed (text hash {actual}, pinned {digest} at version {version}): "
            f"bump its version in domain/prompts/ (so no cached answer to the old text is served) "
            f"and pin the new (version, hash) here")


def test_requests_carry_their_prompt_version_into_the_cache_key():
    payload = {"user_id": "u", "samples": [], "profile": {}}
    req = quick_sections_request(payload)
    assert req.prompt_version == PROMPTS["quick_sections"].version
    assert req.task == "quick_sections" and req.schema_name == PROMPTS["quick_sections"].schema_name
    req.prompt_version += 1
    assert cache_key("anthropic", "m", req) != cache_key("anthropic", "m", quick_sections_request(payload))
