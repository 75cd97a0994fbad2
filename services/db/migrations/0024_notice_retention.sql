-- Append-only: never edit an applied migration; add the next number instead.
--
-- The notices outbox and its deliveries are pruned (services/db/notices.py,
-- Notices.prune, from every reconciler pass): settled deliveries and published
-- notices older than SOULPRINT_WEBHOOK_RETENTION go. These indexes let a pass
-- find the old rows, and ask whether a notice still has a delivery, without
-- reading the whole of either table.
CREATE INDEX IF NOT EXISTS webhook_deliveries_notice_idx ON webhook_deliveries (notice_id);
CREATE INDEX IF NOT EXISTS webhook_deliveries_settled_idx ON webhook_deliveries (updated_at)
    WHERE status IN ('delivered', 'gone');
CREATE INDEX IF NOT EXISTS notices_published_idx ON notices (published_at) WHERE published_at IS NOT NULL;
