-- Append-only: never edit an applied migration; add the next number instead.
--
-- The embedding stage's progress in the status table, beside the full pass's.
-- embedding_total is the job's chunk count of the embedded tiers
-- (SOULPRINT_EMBEDDING_TIERS), known when chunking completes (NULL before);
-- embedded counts the job's rows in chunk_embeddings of that space
-- (embedding_model, a space id) among those tiers. Embedding fails alone:
-- embedding_status 'failed' with embedding_error, the import stays complete.
ALTER TABLE import_jobs
    ADD COLUMN IF NOT EXISTS embedding_status text NOT NULL DEFAULT 'pending'
        CHECK (embedding_status IN ('pending', 'processing', 'complete', 'failed', 'skipped')),
    ADD COLUMN IF NOT EXISTS embedding_model text,
    ADD COLUMN IF NOT EXISTS embedding_tiers text[],
    ADD COLUMN IF NOT EXISTS embedded integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS embedding_total integer,
    ADD COLUMN IF NOT EXISTS embedding_error text,
    ADD COLUMN IF NOT EXISTS embedding_moved_at timestamptz,
    ADD COLUMN IF NOT EXISTS embedding_redrives integer NOT NULL DEFAULT 0;
-- Jobs that completed before this stage existed have nothing to wait for.
UPDATE import_jobs SET embedding_status = 'skipped' WHERE status IN ('complete', 'failed');
