"""Log context: the job and stage a log record belongs to, carried by context variables.

``job_context(job_id, stage)`` wraps one event's work in an agent
(agents/containment.py); the JSON log format (a setting) writes both fields
on every record made inside it, whatever logger made it.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

JOB_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("soulprint_job_id", default=None)
STAGE: contextvars.ContextVar[str | None] = contextvars.ContextVar("soulprint_stage", default=None)


@contextlib.contextmanager
def job_context(job_id: str | None, stage: str | None) -> Iterator[None]:
    job_token, stage_token = JOB_ID.set(job_id), STAGE.set(stage)
    try:
        yield
    finally:
        JOB_ID.reset(job_token)
        STAGE.reset(stage_token)
