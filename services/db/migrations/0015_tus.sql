-- Append-only: never edit an applied migration; add the next number instead.
--
-- Resumable uploads (tus 1.0, services/http/tus.py): one row per upload a
-- person created. The bytes themselves are in a part file under
-- <data dir>/tus/<upload_id> until the upload completes and goes to storage;
-- `upload_offset` is how many of them are durably written (fsynced before the
-- row says so). A PATCH holds the row's lock (SELECT ... FOR UPDATE NOWAIT)
-- while it writes, so one upload takes one PATCH at a time. The row stays
-- after completion, naming its job, until it expires; the sweep removes
-- expired rows with their part files.
CREATE TABLE IF NOT EXISTS tus_uploads (
    upload_id     text PRIMARY KEY,
    user_id       text NOT NULL,
    upload_length bigint NOT NULL CHECK (upload_length > 0),
    upload_offset bigint NOT NULL DEFAULT 0 CHECK (upload_offset BETWEEN 0 AND upload_length),
    metadata      jsonb NOT NULL DEFAULT '{}',   -- Upload-Metadata, decoded: {"filename": ..., ...}
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    completed_at  timestamptz,
    job_id        text                           -- the import the finished upload started
);
CREATE INDEX IF NOT EXISTS tus_uploads_user_idx ON tus_uploads (user_id);
CREATE INDEX IF NOT EXISTS tus_uploads_expires_idx ON tus_uploads (expires_at);

SELECT soulprint_protect('tus_uploads');
