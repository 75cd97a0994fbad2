"""Notify: the notices outbox to people's webhooks, on the notify lane (its own consumer group).

Three loops, each safe to run on every worker at once:

- the relay (a timer): unpublished rows of the ``notices`` outbox go to the
  ``notices`` topic, keyed by person, and are marked published in the same
  transaction that locked them (SKIP LOCKED: workers share the rows). A crash
  between the send and the mark publishes a notice again; that is harmless.
- the agent: each notice becomes one delivery row per enabled endpoint
  subscribed to its type (services/db/webhooks.fan_out; the row's id is the
  webhook-id, so a notice read twice is one delivery). Nothing is sent from
  the stream: a slow or failing endpoint never holds up the next notice.
- the sender (a timer): due deliveries are claimed (FOR UPDATE SKIP LOCKED,
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
from soulprint.services.db.webhooks import Delivery
from soulprint.services.deadletters import Letter, topic_name
from soulprint.services.metrics import METRICS
from soulprint.services.webhooks import Attempt, WebhookSender, backoff_s, notice_body
from soulprint.topics import NOTICES
from soulprint.topics.stages import Lane

log = logging.getLogger("soulprint.agents.notify")

STAGE = "notify"
RELAY_BATCH = 200  # notices one relay pass publishes at most
SEND_BATCH = 32  # deliveries one sender pass attempts at once


class Undeliverable(Exception):
    """A webhook delivery that used its last attempt (the dead letter's exception)."""


def register(rt) -> None:
    lane = rt.lanes[Lane.NOTIFY]
    app, topics, config = lane.app, lane.topics, rt.settings.webhooks

    @app.agent(topics.notices, name="soulprint.notify")
    async def notify(stream):
        async for event in stream.events():
            try:
                await fan_out(rt, event.value, event.message.partition, event.message.offset)
            except Exception:  # noqa: BLE001 - never escape the agent loop (#315); the outbox row stays
                log.exception("webhook fan-out failed for notice %s", getattr(event.value, "notice_id", "?"))

    async def relay():
        try:
            await relay_once(rt, topics)
        except Exception:  # noqa: BLE001 - a timer that raises stops for good
            log.exception("notice relay pass failed")

    async def send():
        try:
            while await send_due(rt) == SEND_BATCH:
                pass  # a full batch: more may be due
        except Exception:  # noqa: BLE001
            log.exception("webhook sender pass failed")

    app.timer(interval=config.poll_s, on_leader=False)(relay)
    app.timer(interval=config.poll_s, on_leader=False)(send)


async def relay_once(rt, topics) -> int:
    """Publish a batch of unpublished notices; how many."""
    async with rt.db.notices.unpublished(RELAY_BATCH) as batch:
        for notice in batch:
            # Wait for the broker's ack before the rows are marked published.
            await (await topics.notices.send(key=notice.user_id, value=notice))
    return len(batch)


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
    (a crash in between sends the letter again on the next attempt: one letter, by its id)."""
    notice = await rt.db.notices.get(d.notice_id)
    if notice is not None:
        error = Undeliverable(f"endpoint {d.endpoint_id}: {result.error or 'no answer'} after {d.attempts} attempts")
        letter = Letter.of(stage=STAGE, topic=topic_name(rt.settings, NOTICES.name),
                           partition=d.source_partition if d.source_partition is not None else -1,
                           offset=d.source_offset if d.source_offset is not None else -1,
                           key=notice.user_id.encode(), value=notice.dumps(), headers=[], error=error,
                           attempts=d.attempts, job_id=d.job_id, user_id=d.user_id)
        await rt.dead_letters.send(letter, blocks_job=False)
    await rt.db.webhooks.dead(d.delivery_id, result.status, result.error)
