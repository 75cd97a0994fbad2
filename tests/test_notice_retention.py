"""The webhook outbox is pruned: old settled deliveries and published notices go, anything that may still
be needed (unpublished, a pending or dead delivery, a notify dead letter not replayed) stays."""

from __future__ import annotations

import uuid

from soulprint.agents.reconciler import reconcile_once
from support.waiting import wait_until

DAY_S = 86400.0


async def notice(db, user: str, label: str, *, published_days_ago: float | None, created_days_ago: float = 40,
                 job_id: str | None = None) -> str:
    notice_id = f"ntc_test_{label}_{uuid.uuid4().hex[:8]}"
    await db.pool.execute(
        "INSERT INTO notices (notice_id, type, user_id, job_id, created_at, published_at)"
        " VALUES ($1, 'soulprint.complete', $2, $3, now() - make_interval(days => $4),"
        " CASE WHEN $5::float8 IS NULL THEN NULL ELSE now() - make_interval(secs => $5::float8 * 86400) END)",
        notice_id, user, job_id or f"job-{label}-{user}", int(created_days_ago), published_days_ago)
    return notice_id


async def delivery(db, notice_id: str, endpoint_id: str, status: str, days_ago: float) -> str:
    delivery_id = f"msg_test_{uuid.uuid4().hex[:12]}"
    await db.pool.execute(
        "INSERT INTO webhook_deliveries (delivery_id, notice_id, endpoint_id, user_id, job_id, type, body, status,"
        " updated_at)"
        " SELECT $1, n.notice_id, $3, n.user_id, n.job_id, n.type, '{}', $4, now() - make_interval(secs => $5)"
        " FROM notices n WHERE n.notice_id = $2",
        delivery_id, notice_id, endpoint_id, status, days_ago * DAY_S)
    return delivery_id


async def endpoint(db) -> str:
    endpoint_id = f"ep_test_{uuid.uuid4().hex[:8]}"
    await db.pool.execute("INSERT INTO webhook_endpoints (endpoint_id, url, secret) VALUES ($1, $2, 'whsec_x')",
                          endpoint_id, "https://hooks.example/soulprint")
    return endpoint_id


async def present(db, table: str, column: str, ids: list[str]) -> set[str]:
    rows = await db.pool.fetch(f"SELECT {column} FROM {table} WHERE {column} = ANY($1::text[])", ids)
    return {r[column] for r in rows}


async def test_prune_removes_what_is_settled_and_keeps_what_may_be_needed(db, user_id):
    ep = await endpoint(db)
    old_alone = await notice(db, user_id, "alone", published_days_ago=2)
    old_delivered = await notice(db, user_id, "delivered", published_days_ago=2)
    settled = [await delivery(db, old_delivered, ep, "delivered", 2), await delivery(db, old_delivered, ep, "gone", 2)]
    recent = await notice(db, user_id, "recent", published_days_ago=0, created_days_ago=0)
    unpublished = await notice(db, user_id, "unpublished", published_days_ago=None)
    pending = await notice(db, user_id, "pending", published_days_ago=2)
    pending_delivery = await delivery(db, pending, ep, "pending", 2)
    dead = await notice(db, user_id, "dead", published_days_ago=2)
    dead_delivery = await delivery(db, dead, ep, "dead", 2)
    recently_delivered = await notice(db, user_id, "fresh-delivery", published_days_ago=2)
    fresh_delivery = await delivery(db, recently_delivered, ep, "delivered", 0)
    lettered = await notice(db, user_id, "lettered", published_days_ago=2, job_id=f"job-lettered-{user_id}")
    await db.pool.execute(
        "INSERT INTO dead_letters (letter_id, user_id, job_id, stage, source_topic, source_partition, source_offset,"
        " error_class, error_message, attempts, blocks_job) VALUES ($1, $2, $3, 'notify', 'notices', 0, 0,"
        " 'Undeliverable', 'no answer', 8, false)",
        f"letter-{uuid.uuid4().hex}", user_id, f"job-lettered-{user_id}")

    await db.notices.prune(DAY_S, 1000)

    notices = [old_alone, old_delivered, recent, unpublished, pending, dead, recently_delivered, lettered]
    assert await present(db, "notices", "notice_id", notices) == {
        recent, unpublished, pending, dead, recently_delivered, lettered}
    deliveries = [*settled, pending_delivery, dead_delivery, fresh_delivery]
    assert await present(db, "webhook_deliveries", "delivery_id", deliveries) == {
        pending_delivery, dead_delivery, fresh_delivery}

    # The letter replayed: nothing needs its notice any more.
    await db.pool.execute("UPDATE dead_letters SET replayed_at = now() WHERE job_id = $1", f"job-lettered-{user_id}")
    await db.notices.prune(DAY_S, 1000)
    assert lettered not in await present(db, "notices", "notice_id", [lettered])


async def test_prune_takes_a_backlog_a_batch_at_a_time(db, user_id):
    ids = [await notice(db, user_id, f"backlog{i}", published_days_ago=3) for i in range(5)]
    counts = []
    while not counts or counts[-1] == 2:  # a full batch: there may be more
        _, notices = await db.notices.prune(DAY_S, 2)
        counts.append(notices)
    assert max(counts) == 2 and len(counts) >= 3
    assert not await present(db, "notices", "notice_id", ids)


async def test_the_reconciler_prunes_past_the_retention(runtime, user_id):
    db = runtime.db
    retention_days = runtime.settings.webhooks.retention_s / DAY_S
    past = await notice(db, user_id, "past", published_days_ago=retention_days + 1, created_days_ago=retention_days + 1)
    within = await notice(db, user_id, "within", published_days_ago=retention_days - 1)

    async def after_a_pass() -> set[str]:
        await reconcile_once(runtime)  # 0 and nothing done if the worker's own pass holds the lock: again
        return await present(db, "notices", "notice_id", [past, within])

    await wait_until(after_a_pass, lambda left: left == {within}, what="the reconciler to prune the old notice")
