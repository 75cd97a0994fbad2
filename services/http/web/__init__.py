"""The person's web app (issue 11; placeholder until it lands)."""

from __future__ import annotations


def routes(ctx) -> list:
    return []
