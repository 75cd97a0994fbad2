"""Per-message containment for every stage: one entry point, ``contained``.

faust-streaming acks a message whose exception escapes the agent loop and
moves on (#315), so no exception may escape. ``contained(rt, stage, event,
work)`` runs one event's work inside the job's log context, timed and counted
(METRICS.stage_duration, stage_events), and decides what a failure means:

- bad input (ExportError, from the parser): the person's problem, not a bug.
  The job fails with its reason; nothing is dead-lettered.
- a transient error (Postgres connection lost, a broker timeout, the LLM
  transport overloaded: ``transient``) is retried in place, up to
  SOULPRINT_TRANSIENT_RETRIES times with exponential back-off from
  SOULPRINT_TRANSIENT_BACKOFF. Every stage is idempotent, so a retry is safe.
- anything else, or a transient error that outlasts its retries: the original
  record goes to the dead-letter topic (services/deadletters.py, its headers
  named there) and the stream goes on. The job keeps all its other work: it
  counts the letter (``dead_letters``, ``dead_letter_error``) and is blocked
  until the letter is replayed. It cannot finish the stage that lost the
  message (a conversation never chunked keeps the import in ``chunking``), the
  reconciler leaves it alone (re-driving would only dead-letter the message
  again) and ``soulprint status`` shows it blocked, with the reason and the
  command. ``soulprint dlq replay`` after the fix sends the record back, and
  the stage's own transition carries the job on. Before the letter is sent,
  the stage's state is rolled back to the one it moved on from (the parse to
  queued, a full-pass stage to the stage before it: topics/stages.py), so the
  replayed trigger wins its transition again. A blocked job is never failed by
  the clock: it waits, visibly, for the operator (a newer import of the person
  supersedes it as usual).

The original record (key, value bytes, headers, topic, partition, offset) is
the faust event's message: for an agent that iterates one event at a time it
is ``faust.current_event()``; a batch taken with ``stream.take_events`` is
handed over with ``with sources(events) as values:``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from typing import Awaitable, Callable, Iterator, Sequence

import asyncpg
import faust
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from soulprint.domain.parsing import ExportError
from soulprint.models.jobs import FullPassStage
from soulprint.models.text import one_line
from soulprint.services.deadletters import Letter, backoff, topic_name
from soulprint.services.llm.base import TransportError
from soulprint.services.logs import job_context
from soulprint.services.metrics import METRICS
from soulprint.topics.stages import route, stage as stage_of

log = logging.getLogger("soulprint.agents")

# The full-pass stages by their agent's name: a dead letter rolls the job back to the stage before.
_FULL_PASS = {"consolidation": FullPassStage.CONSOLIDATING, "memory": FullPassStage.MEMORY,
              "sections": FullPassStage.SECTIONS}
# Stages whose failure is no reason for a job to wait: their letters are kept, the job is not held.
_NOT_BLOCKING = {"query_view"}

_SOURCES: contextvars.ContextVar[dict[int, faust.EventT] | None] = contextvars.ContextVar(
    "soulprint_containment_sources", default=None)


@contextlib.contextmanager
def sources(events: Sequence[faust.EventT]) -> Iterator[list]:
    """A batch from ``stream.take_events``: yields the values, and lets ``contained`` find each
    value's original record."""
    token = _SOURCES.set({id(e.value): e for e in events})
    try:
        yield [e.value for e in events]
    finally:
        _SOURCES.reset(token)


@contextlib.asynccontextmanager
async def batch_counted(stage: str, events: Sequence):
    """Time and count a whole batch of a stage that works in batches (chunker, facts, embed). Its
    events count ok once the batch is done; a batch that raises counts nothing here, since the stage
    then contains its events one by one (chunker) or they are re-driven (and counted then)."""
    started = time.monotonic()
    try:
        yield
    finally:
        METRICS.stage_duration.labels(stage).observe(time.monotonic() - started)
    METRICS.stage_events.labels(stage, "ok").inc(len(events))


def transient(exc: BaseException) -> bool:
    """Errors a retry in a moment can fix: lost connections, timeouts, an overloaded service."""
    if isinstance(exc, KafkaError):
        return bool(getattr(exc, "retriable", False)) or isinstance(exc, (KafkaTimeoutError, KafkaConnectionError))
    return isinstance(exc, (asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                            asyncpg.TooManyConnectionsError, asyncpg.SerializationError,
                            asyncpg.DeadlockDetectedError, TransportError, OSError, TimeoutError,
                            asyncio.TimeoutError))


async def contained(rt, stage: str, event, work: Callable[[], Awaitable[None]]) -> str:
    """Run ``work`` for ``event`` so that nothing escapes; returns the outcome counted
    (ok, skipped, failed, dead_letter). The one entry point of every stage that contains its events.
    An event of an erased person or job is skipped (services/db/erasure.py ``drops``)."""
    job_id = getattr(event, "job_id", None)
    started = time.monotonic()
    with job_context(job_id, stage):
        try:
            outcome = await _attempt(rt, stage, event, work)
        finally:
            METRICS.stage_duration.labels(stage).observe(time.monotonic() - started)
    METRICS.stage_events.labels(stage, outcome).inc()
    return outcome


async def _attempt(rt, stage: str, event, work: Callable[[], Awaitable[None]]) -> str:
    job_id = getattr(event, "job_id", None)
    retries, base_s = rt.settings.transient_retries, rt.settings.transient_backoff_s
    attempt = 0
    while True:
        attempt += 1
        try:
            if await rt.db.erasure.drops(event):  # erased: a replay or redelivery brings nothing back
                return "skipped"
            await work()
            return "ok"
        except ExportError as exc:
            if job_id:
                await _quietly(rt.db.jobs.fail(job_id, getattr(exc, "code", "bad_input"), str(exc)),
                               f"could not mark job {job_id} failed")
            return "failed"
        except Exception as exc:  # noqa: BLE001 - the whole point is to stop escapes
            if transient(exc) and attempt <= retries:
                log.warning("%s: transient error on job %s (attempt %d of %d): %s", stage, job_id, attempt,
                            retries + 1, one_line(exc))
                await backoff(attempt, base_s)
                continue
            log.error("%s failed on job %s after %d attempt(s): %s", stage, job_id, attempt, one_line(exc),
                      exc_info=True)
            await dead_letter(rt, stage, event, exc, attempt)
            return "dead_letter"


async def dead_letter(rt, stage: str, event, exc: BaseException, attempts: int = 1) -> None:
    """Roll the stage back, then send the event's original record to the dead-letter topic and
    count it on its job. If that fails too, the job is not marked: the reconciler re-drives it
    once it stalls, as for a lost message."""
    job_id, blocks = getattr(event, "job_id", None), stage not in _NOT_BLOCKING
    try:
        if job_id and blocks:
            await _roll_back(rt, stage, job_id)
        await rt.dead_letters.send(_letter(rt, stage, event, exc, attempts), blocks_job=blocks)
    except Exception:  # noqa: BLE001 - the broker or Postgres itself may be what failed
        log.exception("could not dead-letter a message of %s for job %s", stage, job_id)


async def _roll_back(rt, stage: str, job_id: str) -> None:
    if stage == "ingest":
        await rt.db.jobs.release_ingest(job_id)  # a replayed request claims the parse again
    elif stage in _FULL_PASS:
        state = _FULL_PASS[stage]
        await rt.db.jobs.advance_full_pass(job_id, state, stage_of(state).after)


def _letter(rt, stage: str, event, exc: BaseException, attempts: int) -> Letter:
    ids = {"job_id": getattr(event, "job_id", None), "user_id": getattr(event, "user_id", None)}
    source = _source(event)
    if source is not None:
        m = source.message
        headers = m.headers.items() if isinstance(m.headers, dict) else (m.headers or [])
        return Letter.of(stage=stage, topic=m.topic, partition=m.partition, offset=m.offset, key=m.key,
                         value=m.value, headers=headers, error=exc, attempts=attempts, **ids)
    # No record (an event built in this process): the event as it would travel.
    spec, key = route(event)
    return Letter.of(stage=stage, topic=topic_name(rt.settings, spec.name), partition=-1, offset=-1,
                     key=key.encode(), value=event.dumps(), headers=[], error=exc, attempts=attempts, **ids)


def _source(event) -> faust.EventT | None:
    batch = _SOURCES.get()
    if batch is not None and id(event) in batch:
        return batch[id(event)]
    current = faust.current_event()
    return current if current is not None and current.value is event else None


async def _quietly(call: Awaitable, what: str) -> None:
    try:
        await call
    except Exception:  # noqa: BLE001 - Postgres itself may be what failed
        log.exception(what)
