"""Per-message error containment for every agent.

faust-streaming acks a message whose exception escapes the agent loop and
moves on (#315), so no exception may escape: a message that fails is sent to
the dead-letter topic with its reason, its job (when it has one) is failed
with a one-line error, and the stream goes on with the next message.
"""

from __future__ import annotations

import logging
import traceback
from typing import Awaitable, Callable

from soulprint.domain.parsing import ExportError
from soulprint.models.events import DeadLetter, now
from soulprint.models.text import one_line

log = logging.getLogger("soulprint.agents")


async def contained(rt, stage: str, event, work: Callable[[], Awaitable[None]]) -> None:
    job_id = getattr(event, "job_id", None)
    try:
        await work()
    except ExportError as exc:
        # Bad input: the person's problem, not a bug. Fail the job, no dead letter.
        if job_id:
            await rt.db.jobs.fail(job_id, getattr(exc, "code", "bad_input"), str(exc))
    except Exception as exc:  # noqa: BLE001 - the whole point is to stop escapes
        log.error("%s failed on job %s: %s\n%s", stage, job_id, one_line(exc), traceback.format_exc())
        await dead_letter(rt, stage, event, exc)
        if job_id:
            try:
                await rt.db.jobs.fail(job_id, "internal", f"{stage} failed: {one_line(exc)}")
            except Exception:  # noqa: BLE001 - Postgres itself may be what failed
                log.exception("could not mark job %s failed", job_id)


async def dead_letter(rt, stage: str, event, exc: BaseException) -> None:
    try:
        payload = event.dumps() if hasattr(event, "dumps") else repr(event)
        if isinstance(payload, bytes):
            payload = payload.decode("utf-8", "replace")
        await rt.topics.dead_letters.send(
            key=stage,
            value=DeadLetter(
                topic=stage,
                job_id=getattr(event, "job_id", None),
                error=f"{type(exc).__name__}: {one_line(exc)}",
                payload_preview=payload[:2000],
                failed_at=now(),
            ),
        )
    except Exception:  # noqa: BLE001
        log.exception("could not write dead letter for %s", stage)


async def contained_full_pass(rt, stage: str, event, work: Callable[[], Awaitable[None]]) -> None:
    """Like ``contained``, but a failure fails only the full pass: the import and v1 stay."""
    try:
        await work()
    except Exception as exc:  # noqa: BLE001
        log.error("%s failed on job %s: %s\n%s", stage, event.job_id, one_line(exc), traceback.format_exc())
        await dead_letter(rt, stage, event, exc)
        try:
            await rt.db.jobs.fail_full_pass(event.job_id, f"{stage} failed: {one_line(exc)}")
        except Exception:  # noqa: BLE001
            log.exception("could not mark the full pass of job %s failed", event.job_id)
