"""Waiting on conditions (a row, a status), never on a clock.

Tests and tools poll the status table through these helpers; the poll
interval is a detail of how the condition is observed, not a synchronisation.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, TypeVar

T = TypeVar("T")

POLL_INTERVAL_S = 0.05


async def wait_until(probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], *, limit_s: float = 120.0,
                     what: str = "condition") -> T:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        value = await probe()
        if accept(value):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}; last value: {value!r}")
        await asyncio.sleep(POLL_INTERVAL_S)


async def wait_for_job(db, job_id: str, *, statuses=("complete", "failed"), limit_s: float = 120.0):
    return await wait_until(
        lambda: db.jobs.get(job_id),
        lambda job: job is not None and job.status in statuses,
        limit_s=limit_s,
        what=f"job {job_id} to reach {statuses}",
    )
