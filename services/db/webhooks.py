"""Webhook endpoints and their deliveries (migration 0016).

An endpoint is the operator's: a URL, its ``whsec_`` secret, the event types it
wants (None: all), and whether it is still enabled (a 410 Gone disables it).

A delivery is one notice for one endpoint; its id is the ``webhook-id``
(deterministic from the notice and the endpoint, so a notice read twice is one
delivery) and it carries the person's user_id (erasure removes it with the
person). Retries live in these rows, not in memory: ``attempts`` and
``next_attempt_at``, claimed with FOR UPDATE SKIP LOCKED by whichever worker
comes first, so a failing endpoint never holds up the agent's stream and its
retries survive a restart.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

import asyncpg

from soulprint.models.text import one_line


@dataclass(frozen=True)
class Endpoint:
    endpoint_id: str
    url: str
    secret: str
    events: list[str] | None
    enabled: bool
    disabled_reason: str | None
    created_at: datetime

    def public(self) -> dict:
        """What `webhook list` shows: everything but the secret."""
        return {"endpoint_id": self.endpoint_id, "url": self.url, "events": self.events, "enabled": self.enabled,
                "disabled_reason": self.disabled_reason, "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class Delivery:
    """A delivery row, with its endpoint's URL and secret when claimed for an attempt."""

    delivery_id: str
    notice_id: str
    endpoint_id: str
    user_id: str
    job_id: str | None
    type: str
    body: str
    source_partition: int | None
    source_offset: int | None
    status: str
    attempts: int
    next_attempt_at: datetime
    updated_at: datetime
    last_status: int | None
    last_error: str | None
    url: str = ""
    secret: str = ""

    @classmethod
    def from_row(cls, row) -> "Delivery":
        return cls(**{k: row[k] for k in cls.__dataclass_fields__ if k in row.keys()})


def _endpoint(row) -> Endpoint:
    return Endpoint(**{k: row[k] for k in Endpoint.__dataclass_fields__})


class Webhooks:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # -- endpoints ---------------------------------------------------------------------
    async def add(self, url: str, secret: str, events: Sequence[str] | None) -> Endpoint:
        row = await self.pool.fetchrow(
            "INSERT INTO webhook_endpoints (endpoint_id, url, secret, events) VALUES ($1, $2, $3, $4) RETURNING *",
            f"ep_{secrets.token_hex(8)}", url, secret, sorted(set(events)) if events else None,
        )
        return _endpoint(row)

    async def endpoints(self) -> list[Endpoint]:
        return [_endpoint(r) for r in await self.pool.fetch("SELECT * FROM webhook_endpoints ORDER BY created_at")]

    async def endpoint(self, endpoint_id: str) -> Endpoint | None:
        row = await self.pool.fetchrow("SELECT * FROM webhook_endpoints WHERE endpoint_id = $1", endpoint_id)
        return _endpoint(row) if row else None

    async def remove(self, endpoint_id: str) -> bool:
        """The endpoint and its deliveries (ON DELETE CASCADE)."""
        return await self.pool.fetchval(
            "DELETE FROM webhook_endpoints WHERE endpoint_id = $1 RETURNING true", endpoint_id) is not None

    async def disable(self, endpoint_id: str, reason: str) -> None:
        """No more deliveries to this endpoint: it is disabled and its pending deliveries end as 'gone'."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, disabled_at = now()"
                " WHERE endpoint_id = $1 AND enabled",
                endpoint_id, one_line(reason, 500),
            )
            await conn.execute(
                "UPDATE webhook_deliveries SET status = 'gone', updated_at = now()"
                " WHERE endpoint_id = $1 AND status = 'pending'",
                endpoint_id,
            )

    # -- deliveries --------------------------------------------------------------------
    async def fan_out(self, notice_id: str, body: str, partition: int | None, offset: int | None) -> int:
        """A delivery of the notice for every enabled endpoint subscribed to its type; how many are new.

        Built from the outbox row, so a notice whose person was erased meanwhile (the row is gone)
        is delivered to no one. The same notice again is no new delivery, except that a dead one
        starts over (a `dlq replay` of its notice, once the endpoint is fixed), read where the replayed
        record is: should it die again, that is a new dead letter, not the replayed one."""
        rows = await self.pool.fetch(
            """
            INSERT INTO webhook_deliveries AS d (delivery_id, notice_id, endpoint_id, user_id, job_id, type, body,
                                                 source_partition, source_offset)
            SELECT 'msg_' || left(encode(sha256(convert_to(n.notice_id || ':' || e.endpoint_id, 'UTF8')), 'hex'), 32),
                   n.notice_id, e.endpoint_id, n.user_id, n.job_id, n.type, $2, $3, $4
              FROM notices n
              JOIN webhook_endpoints e ON e.enabled AND (e.events IS NULL OR n.type = ANY (e.events))
             WHERE n.notice_id = $1
            ON CONFLICT (delivery_id) DO UPDATE
               SET status = 'pending', attempts = 0, next_attempt_at = now(), updated_at = now(),
                   source_partition = EXCLUDED.source_partition, source_offset = EXCLUDED.source_offset
             WHERE d.status = 'dead'
            RETURNING delivery_id
            """,
            notice_id, body, partition, offset,
        )
        return len(rows)

    async def claim_due(self, limit: int, lease_s: float) -> list[Delivery]:
        """Up to ``limit`` pending deliveries whose time has come, to attempt now: each counts an attempt
        and is leased for ``lease_s`` (a worker that dies mid-attempt leaves it due again after that)."""
        rows = await self.pool.fetch(
            """
            WITH due AS (
                SELECT d.delivery_id FROM webhook_deliveries d
                  JOIN webhook_endpoints e ON e.endpoint_id = d.endpoint_id AND e.enabled
                 WHERE d.status = 'pending' AND d.next_attempt_at <= now()
                 ORDER BY d.next_attempt_at
                 LIMIT $1
                   FOR UPDATE OF d SKIP LOCKED
            )
            UPDATE webhook_deliveries d
               SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $2), updated_at = now()
              FROM due, webhook_endpoints e
             WHERE d.delivery_id = due.delivery_id AND e.endpoint_id = d.endpoint_id
            RETURNING d.*, e.url, e.secret
            """,
            limit, lease_s,
        )
        return [Delivery.from_row(r) for r in rows]

    async def delivered(self, delivery_id: str, status: int) -> None:
        await self.pool.execute(
            "UPDATE webhook_deliveries SET status = 'delivered', last_status = $2, last_error = NULL,"
            " delivered_at = now(), updated_at = now() WHERE delivery_id = $1 AND status = 'pending'",
            delivery_id, status,
        )

    async def retry(self, delivery_id: str, status: int | None, error: str | None, delay_s: float) -> None:
        """Another attempt ``delay_s`` after now (the same now as updated_at)."""
        await self.pool.execute(
            "UPDATE webhook_deliveries SET last_status = $2, last_error = $3, updated_at = now(),"
            " next_attempt_at = now() + make_interval(secs => $4) WHERE delivery_id = $1 AND status = 'pending'",
            delivery_id, status, error and one_line(error, 500), delay_s,
        )

    async def dead(self, delivery_id: str, status: int | None, error: str | None) -> None:
        await self.pool.execute(
            "UPDATE webhook_deliveries SET status = 'dead', last_status = $2, last_error = $3, updated_at = now()"
            " WHERE delivery_id = $1 AND status = 'pending'",
            delivery_id, status, error and one_line(error, 500),
        )

    async def deliveries(self, *, job_id: str | None = None, endpoint_id: str | None = None) -> list[Delivery]:
        rows = await self.pool.fetch(
            "SELECT * FROM webhook_deliveries WHERE ($1::text IS NULL OR job_id = $1)"
            " AND ($2::text IS NULL OR endpoint_id = $2) ORDER BY created_at, delivery_id",
            job_id, endpoint_id,
        )
        return [Delivery.from_row(r) for r in rows]
