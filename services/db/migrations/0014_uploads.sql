-- Uploads (issue 10): what an uploaded export was, and a revision for every change of a job's row.
--
-- sha256 and export_bytes: the stored export's hash and size, so the same export of
-- the same person while a job of it is still running is refused (409) instead
-- of imported twice. NULL for imports published without storage (the embedded
-- `soulprint import` of a local path).
--
-- revision: grows by one with every UPDATE that changes the row, bumped by a
-- trigger so that no transition in services/db/jobs.py has to remember it.
-- It is the id of the server-sent events of GET /v1/imports/{id}/events: a
-- client that reconnects with Last-Event-ID gets the row again only if it
-- changed since.

ALTER TABLE import_jobs
    ADD COLUMN sha256 text,
    ADD COLUMN export_bytes bigint,
    ADD COLUMN revision bigint NOT NULL DEFAULT 1;

-- The duplicate check: a person's jobs of one export.
CREATE INDEX import_jobs_export ON import_jobs (user_id, sha256) WHERE sha256 IS NOT NULL;

CREATE FUNCTION soulprint_bump_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := OLD.revision + 1;
    RETURN NEW;
END
$$;

CREATE TRIGGER import_jobs_revision
    BEFORE UPDATE ON import_jobs
    FOR EACH ROW
    WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION soulprint_bump_revision();
