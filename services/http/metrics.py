"""Routes of this module (placeholder until its issue-10 part lands)."""

from __future__ import annotations


def routes(ctx) -> list:
    return []
