-- Append-only: never edit an applied migration; add the next number instead.
--
-- Incremental re-import (issue 10 item 6). A conversation stores its content
-- fingerprint (domain/fingerprint.py); a newer import of the person copies the
-- conversation, chunks, embeddings and facts of every conversation whose
-- fingerprint is unchanged from the person's current import instead of
-- chunking, embedding and extracting it again (docs/design.md, "Incremental
-- re-import"). NULL: chunked before this migration, never carried.
ALTER TABLE conversations ADD COLUMN IF NOT EXISTS fingerprint text;

-- Of conversations_chunked, how many were carried over from the previous
-- import (not chunked), and how many of the job's extraction chunks had their
-- facts carried (not extracted).
ALTER TABLE import_jobs
    ADD COLUMN IF NOT EXISTS conversations_carried integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS extraction_carried integer NOT NULL DEFAULT 0;
