"""Usage accounting: a running total of what was actually paid, per job and stage.

Every ``complete()`` call reports its :class:`Usage` once, repair requests
included. Rows *accumulate* (they are not idempotent on purpose): a stage that
is re-run after a crash paid twice, and the total must say so. A response
served from our cache records ``requests=0``, zero tokens and cost, and
``cache_hits=1``, so a re-run shows up as hits rather than as spend.
"""

from __future__ import annotations

import collections
from decimal import Decimal
from typing import Any

from .base import Usage

_COLUMNS = ("requests", "cache_hits", "throttled", "input_tokens", "output_tokens",
            "cache_creation_input_tokens", "cache_read_input_tokens", "cost_usd")


class MemoryUsageSink:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str, str], Usage] = collections.defaultdict(Usage)
        self.calls = 0

    async def record(self, job_id: str | None, stage: str, provider: str, model: str, usage: Usage) -> None:
        key = (job_id or "", stage, provider, model)
        self.rows[key] = self.rows[key] + usage
        self.calls += 1

    def total(self, job_id: str | None = None) -> Usage:
        return sum((u for (j, *_), u in self.rows.items() if job_id is None or j == job_id), Usage())

    def for_job(self, job_id: str) -> dict[str, Any]:
        return _summarise(job_id, [(s, p, m, u) for (j, s, p, m), u in self.rows.items() if j == job_id])


class PostgresUsageSink:
    """Upserts into ``llm_usage`` (services/migrations/0002_llm.sql), adding to the row."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def record(self, job_id: str | None, stage: str, provider: str, model: str, usage: Usage) -> None:
        await self.pool.execute(
            """
            INSERT INTO llm_usage (job_id, stage, provider, model, requests, cache_hits, throttled,
                                   input_tokens, output_tokens, cache_creation_input_tokens,
                                   cache_read_input_tokens, cost_usd)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
            ON CONFLICT (job_id, stage, provider, model) DO UPDATE SET
                requests = llm_usage.requests + EXCLUDED.requests,
                cache_hits = llm_usage.cache_hits + EXCLUDED.cache_hits,
                throttled = llm_usage.throttled + EXCLUDED.throttled,
                input_tokens = llm_usage.input_tokens + EXCLUDED.input_tokens,
                output_tokens = llm_usage.output_tokens + EXCLUDED.output_tokens,
                cache_creation_input_tokens = llm_usage.cache_creation_input_tokens
                                              + EXCLUDED.cache_creation_input_tokens,
                cache_read_input_tokens = llm_usage.cache_read_input_tokens + EXCLUDED.cache_read_input_tokens,
                cost_usd = llm_usage.cost_usd + EXCLUDED.cost_usd,
                updated_at = now()
            """,
            job_id or "", stage, provider, model, usage.requests, usage.cache_hits, usage.throttled,
            usage.input_tokens, usage.output_tokens, usage.cache_creation_input_tokens,
            usage.cache_read_input_tokens,
            # numeric column: exact running sums, no float drift over thousands of rows
            Decimal(repr(round(usage.cost_usd, 10))),
        )


async def usage_for_job(pool: Any, job_id: str) -> dict[str, Any]:
    """``{"job_id", "stages": {stage: {..., "by_model": {...}}}, "total": {...}}`` from ``llm_usage``."""
    rows = await pool.fetch(
        f"SELECT stage, provider, model, {', '.join(_COLUMNS)} FROM llm_usage WHERE job_id = $1 "
        "ORDER BY stage, provider, model",
        job_id,
    )
    items = []
    for r in rows:
        u = Usage(**{c: (float(r[c]) if c == "cost_usd" else int(r[c])) for c in _COLUMNS})
        items.append((r["stage"], r["provider"], r["model"], u))
    return _summarise(job_id, items)


def _summarise(job_id: str, items: list[tuple[str, str, str, Usage]]) -> dict[str, Any]:
    stages: dict[str, dict[str, Any]] = {}
    total = Usage()
    for stage, provider, model, u in items:
        entry = stages.setdefault(stage, {"usage": Usage(), "by_model": {}})
        entry["usage"] = entry["usage"] + u
        entry["by_model"][f"{provider}/{model}"] = _rounded(u.to_dict())
        total = total + u
    return {
        "job_id": job_id,
        "stages": {s: {**_rounded(e["usage"].to_dict()), "by_model": e["by_model"]} for s, e in stages.items()},
        "total": _rounded(total.to_dict()),
    }


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    d["cost_usd"] = round(d["cost_usd"], 8)
    return d
