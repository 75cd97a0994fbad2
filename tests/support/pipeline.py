"""Driving the pipeline from tests and benchmarks: publish an import, wait for it to end."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from soulprint.models.events import ImportRequested
from soulprint.reporting import job_finished
from soulprint.services.kafka import ImportPublisher
from support.waiting import wait_until


async def publish_import(settings, user_id: str, source: Path, job_id: str | None = None) -> str:
    job_id = job_id or str(uuid.uuid4())
    async with ImportPublisher(settings) as publisher:
        await publisher.publish(ImportRequested(job_id=job_id, user_id=user_id, source_uri=Path(source).as_uri(),
                                                requested_at=time.time()))
    return job_id


async def import_and_wait(rt, user_id: str, source: Path, *, job_id: str | None = None,
                          limit_s: float = 180.0):
    job_id = await publish_import(rt.settings, user_id, source, job_id)
    return await wait_until(lambda: rt.db.jobs.get(job_id), job_finished, limit_s=limit_s,
                            what=f"import {job_id} to finish")
