"""Usage accounting: a running total of what was actually paid, per job and stage.

Every ``complete()`` call reports its :class:`Usage` once, repair requests
included. Rows *accumulate* (they are not idempotent on purpose): a stage that
is re-run after a crash paid twice, and the total must say so. A response
served from our cache records ``requests=0``, zero tokens and cost, and
``cache_hits=1``, so a re-run shows up as hits rather than as spend.
"""

from __future__ import annotations

import collections
from typing import Any

from soulprint.models.llm import LLMResult, Usage
from soulprint.services.metrics import METRICS

USAGE_FIELDS = ("requests", "cache_hits", "throttled", "input_tokens", "output_tokens",
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
        return summarise(job_id, [(s, p, m, u) for (j, s, p, m), u in self.rows.items() if j == job_id])


def summarise(job_id: str, items: list[tuple[str, str, str, Usage]]) -> dict[str, Any]:
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


def outcome(result: LLMResult) -> str:
    """paid (an answer from the provider), cached (from our response cache), offline, or error."""
    if not result.ok:
        return "error"
    return "cached" if result.cached else "offline" if result.offline else "paid"


def observe(task: str, result: LLMResult) -> None:
    """Count one complete() result in the process's metrics: the request by model, task and outcome, what
    it cost (tokens, dollars: repair calls included), and its error class. Called once per result, by the
    client that made it; no label names a job or a person."""
    model = result.model or "unknown"
    kind = outcome(result)
    METRICS.llm_requests.labels(model, task, kind).inc()
    if kind == "error":
        METRICS.llm_errors.labels(model, result.error_kind or "api").inc()
    u = result.usage
    for name, tokens in (("input", u.input_tokens), ("output", u.output_tokens),
                         ("cache_read", u.cache_read_input_tokens), ("cache_write", u.cache_creation_input_tokens)):
        if tokens:
            METRICS.llm_tokens.labels(model, name).inc(tokens)
    if u.cost_usd:
        METRICS.llm_cost.labels(model).inc(u.cost_usd)
