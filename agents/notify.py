"""Notify: the notices outbox to people's webhooks, on the notify lane (its own consumer group).

Three loops, each safe to run on every worker at once:

- the relay (a loop on the lane's app): unpublished rows of the ``notices`` outbox go to the
  ``notices`` topic, keyed by person, and are marked published in the same
  transaction that locked them (SKIP LOCKED: workers share the rows). A crash
  between the send and the mark publishes a notice again; that is harmless.
- the agent: each notice becomes one delivery row per enabled endpoint
  subscribed to its type (services/db/webhooks.fan_out; the row's id is the
  webhook-id, so a notice read twice is one delivery). Nothing is sent from
  the stream: a slow or failing endpoint never holds up the next notice.
- the sender (another loop): due deliveries are claimed (FOR UPDATE SKIP LOCKED,
  leased for the request's timeout) and POSTed, signed (services/webhooks).
  2xx: delivered. 410 Gone: the endpoint is disabled, its deliveries end.
  Anything else: another attempt after the endpoint's Retry-After, else an
  exponential back-off with full jitter; after the last attempt the notice
  goes to the dead-letter topic (its __connect.errors.* headers name the
  notices topic, partition and offset it was read at; `dlq replay` sends it
  back, which starts its dead deliveries over) and the delivery is dead.
"""

from __future__ import annotations

import asyncio
import logging

from soulprint.models.events import JobNotice
from soulprint.models.text import one_line
from soulprint.services.db.notices import NOTIFY_STAGE as STAGE  # what its dead letters are named
from soulprint.services.db.webhooks import Delivery
from soulprint.services.deadletters import Letter, topic_name
from soulprint.services.metrics import METRICS
from soulprint.services.webhooks import Attempt, WebhookSender, backoff_s, notice_body
from soulprint.topics import NOTICES
from soulprint.topics.stages import Lane

log = logging.getLogger("soulprint.agents.notify")

RELAY_BATCH = 200  # notices one relay pass publishes at most
SEND_BATCH = 32  # deliveries one sender pass attempts at once
FAN_OUT_ATTEMPTS = 5  # tries at turning one notice into deliveries before it is a dead letter


class Undeliverable(Exception):
    """A webhook delivery that used its last attempt (the dead letter's exception)."""


def register(rt) -> None:
    lane = rt.lanes[Lane.NOTIFY]
    app, topics, config = lane.app, lane.topics, rt.settings.webhooks

    @app.agent(topics.notices, name="soulprint.notify")
    async def notify(stream):
        async for event in stream.events():
            await _fan_out_or_dead_letter(rt, event)

    async def relay() -> None:
        await relay_once(rt, topics)

    async def send() -> None:
        while await send_due(rt) == SEND_BATCH:
            pass  # a full batch: more may be due now

    for work in (relay, send):
        app.task(_every(config.poll_s, work))


def _every(interval_s: float, work):
    """A task running ``work`` again ``interval_s`` after each pass ends (a timer would warn when a
    slow endpoint's pass outlasts its interval); an error is logged and the loop goes on."""
    async def loop() -> None:
        while True:
            try:
                await work()
            except Exception:  # noqa: BLE001 - a loop that raises stops for good
                log.exception("notify: %s pass failed", work.__name__)
            await asyncio.sleep(interval_s)

    loop.__name__ = f"notify.{work.__name__}"
    return loop


async def relay_once(rt, topics) -> int:
    """Publish a batch of unpublished notices; how many."""
    async with rt.db.notices.unpublished(RELAY_BATCH) as batch:
        for notice in batch:
            # Wait for the broker's ack before the rows are marked published.
            await (await topics.notices.send(key=notice.user_id, value=notice))
    return len(batch)


async def _fan_out_or_dead_letter(rt, event) -> None:
    """Fan one notice out, retrying a failure (Postgres away) a few times; then it is a dead letter,
    so that nothing escapes the agent loop (#315) and the notice is not lost with its offset."""
    notice, message = event.value, event.message
    for attempt in range(1, FAN_OUT_ATTEMPTS + 1):
        try:
            await fan_out(rt, notice, message.partition, message.offset)
            return
        except Exception as exc:  # noqa: BLE001
            log.warning("webhook fan-out of notice %s failed (attempt %d): %s", notice.notice_id, attempt,
                        one_line(exc))
            if attempt == FAN_OUT_ATTEMPTS:
                try:
                    await _send_letter(rt, notice, message.partition, message.offset, exc, attempt)
                except Exception:  # noqa: BLE001 - the broker or Postgres may be what failed
                    log.exception("could not dead-letter notice %s", notice.notice_id)
                return
            await asyncio.sleep(0.5 * 2 ** (attempt - 1))


async def fan_out(rt, notice: JobNotice, partition: int | None, offset: int | None) -> int:
    return await rt.db.webhooks.fan_out(notice.notice_id, notice_body(notice, rt.settings.webhooks.public_url),
                                        partition, offset)


async def send_due(rt) -> int:
    """Attempt every due delivery of one claim, concurrently; how many were claimed."""
    config = rt.settings.webhooks
    # The lease outlasts the request (its timeout) and the SSRF check's DNS lookup.
    due = await rt.db.webhooks.claim_due(SEND_BATCH, lease_s=2 * config.timeout_s + 5)
    if due:
        async with WebhookSender(config) as sender:
            await asyncio.gather(*(_attempt(rt, sender, d) for d in due))
    return len(due)


async def _attempt(rt, sender: WebhookSender, d: Delivery) -> None:
    config, hooks = rt.settings.webhooks, rt.db.webhooks
    try:
        result = await sender.send(d.url, d.secret, d.delivery_id, d.body)
    except Exception as exc:  # noqa: BLE001 - a bug here must not lose the delivery: it is retried
        log.exception("webhook attempt %s failed", d.delivery_id)
        result = Attempt(None, error=f"{type(exc).__name__}")
    if result.delivered:
        await hooks.delivered(d.delivery_id, result.status)
        outcome = "ok"
    elif result.gone:
        log.warning("webhook endpoint %s answered 410 Gone: disabled", d.endpoint_id)
        await hooks.disable(d.endpoint_id, "the endpoint answered 410 Gone")
        outcome = "gone"
    elif d.attempts >= config.max_attempts:
        await _dead_letter(rt, d, result)
        outcome = "dead_letter"
    else:
        delay = result.retry_after_s if result.retry_after_s is not None else backoff_s(d.attempts, config)
        await hooks.retry(d.delivery_id, result.status, result.error, delay)
        outcome = "retry"
    METRICS.webhook_deliveries.labels(outcome=outcome).inc()
    if outcome != "ok":
        log.info("webhook %s to endpoint %s, attempt %d: %s (%s)", d.delivery_id, d.endpoint_id, d.attempts,
                 outcome, result.error)


async def _dead_letter(rt, d: Delivery, result: Attempt) -> None:
    """The notice that could not be delivered, on the dead-letter topic, then the delivery marked dead
    (a crash in between sends the letter again on the next attempt: the same letter, by its id)."""
    notice = await rt.db.notices.get(d.notice_id)
    if notice is not None:
        error = Undeliverable(f"endpoint {d.endpoint_id}: {result.error or 'no answer'} after {d.attempts} attempts")
        await _send_letter(rt, notice, d.source_partition, d.source_offset, error, d.attempts)
    await rt.db.webhooks.dead(d.delivery_id, result.status, result.error)


async def _send_letter(rt, notice: JobNotice, partition: int | None, offset: int | None, error: BaseException,
                       attempts: int) -> None:
    """The notice's record as the notices topic holds it (key, value), with the dead-letter headers
    (services/deadletters.py); it holds up no job: a webhook failing is no reason for an import not to end."""
    letter = Letter.of(stage=STAGE, topic=topic_name(rt.settings, NOTICES.name),
                       partition=-1 if partition is None else partition, offset=-1 if offset is None else offset,
                       key=notice.user_id.encode(), value=notice.dumps(), headers=[], error=error,
                       attempts=attempts, job_id=notice.job_id, user_id=notice.user_id)
    await rt.dead_letters.send(letter, blocks_job=False)
