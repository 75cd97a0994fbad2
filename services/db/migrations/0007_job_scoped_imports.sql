-- Append-only: never edit an applied migration; add the next number instead.
--
-- A job's conversations and chunks are its own rows. Until now a re-import
-- moved each conversation and its chunks to the newest job, so failing that
-- job deleted the person's complete import. Now conversations are keyed
-- (job_id, conversation_id) and chunks (job_id, chunk_id) (chunk_id stays
-- uuid5(user, conversation, tier, index): the same across jobs); a job writes
-- and, when it fails, deletes only its own rows. `people.current_job_id` is
-- the person's last complete import; when a newer job completes it becomes
-- current and the rows of the person's older jobs are retired.
CREATE TABLE IF NOT EXISTS people (
    user_id         text PRIMARY KEY,
    current_job_id  text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Existing data: the newest complete job is current, and the rows the person
-- holds (tagged with whichever job last touched them) become that job's.
INSERT INTO people (user_id, current_job_id)
SELECT DISTINCT ON (user_id) user_id, job_id
  FROM import_jobs WHERE status = 'complete'
 ORDER BY user_id, created_at DESC, job_id DESC
ON CONFLICT (user_id) DO NOTHING;
UPDATE conversations c SET job_id = p.current_job_id
  FROM people p WHERE p.user_id = c.user_id AND c.job_id <> p.current_job_id;
UPDATE conversation_chunks k SET job_id = p.current_job_id
  FROM people p WHERE p.user_id = k.user_id AND k.job_id <> p.current_job_id;

ALTER TABLE conversations DROP CONSTRAINT conversations_pkey;
ALTER TABLE conversations ADD PRIMARY KEY (job_id, conversation_id);
ALTER TABLE conversations DROP COLUMN chunked_job_id;  -- the key says it now
DROP INDEX IF EXISTS conversations_job_idx;            -- the key's prefix
CREATE INDEX IF NOT EXISTS conversations_user_idx ON conversations (user_id);

ALTER TABLE conversation_chunks DROP CONSTRAINT conversation_chunks_pkey;
ALTER TABLE conversation_chunks ADD PRIMARY KEY (job_id, chunk_id);
-- (user, conversation, tier, index) is what chunk_id is derived from: the
-- key covers it, and one index less per chunk written.
DO $$
DECLARE c record;
BEGIN
    FOR c IN SELECT conname FROM pg_constraint
              WHERE conrelid = 'conversation_chunks'::regclass AND contype = 'u'
    LOOP
        EXECUTE format('ALTER TABLE conversation_chunks DROP CONSTRAINT %I', c.conname);
    END LOOP;
END $$;

-- Embeddings, one row per (chunk, model) with its dimension. An undimensioned
-- `vector` column cannot be HNSW-indexed; each embedding space gets a partial
-- expression index ((embedding::vector(N))) WHERE model = '...' instead
-- (services/db/chunks.py, docs/design.md "Embeddings").
ALTER TABLE conversation_chunks DROP COLUMN IF EXISTS embedding;
CREATE TABLE IF NOT EXISTS chunk_embeddings (
    job_id      text NOT NULL,
    chunk_id    uuid NOT NULL,
    model       text NOT NULL,
    dimensions  integer NOT NULL CHECK (dimensions > 0),
    embedding   vector NOT NULL CHECK (vector_dims(embedding) = dimensions),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, chunk_id, model),
    FOREIGN KEY (job_id, chunk_id) REFERENCES conversation_chunks (job_id, chunk_id) ON DELETE CASCADE
);

-- Job states: 'quick_ready' was allowed and never written (the quick pass has
-- its own quick_status); re-drives of the import counted once each, apart
-- from claims; facts dropped as unattributable counted per extraction.
ALTER TABLE import_jobs DROP CONSTRAINT IF EXISTS import_jobs_status_check;
UPDATE import_jobs SET status = 'complete' WHERE status = 'quick_ready';
ALTER TABLE import_jobs ADD CONSTRAINT import_jobs_status_check
    CHECK (status IN ('queued', 'parsing', 'chunking', 'complete', 'failed'));
ALTER TABLE import_jobs
    ADD COLUMN IF NOT EXISTS redrives integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS facts_dropped integer NOT NULL DEFAULT 0;
ALTER TABLE fact_extractions ADD COLUMN IF NOT EXISTS dropped integer NOT NULL DEFAULT 0;

-- A soulprint version keeps its rendered sections, so that a failed job's
-- quick version can be replaced by the current import's latest version.
ALTER TABLE soulprint_versions ADD COLUMN IF NOT EXISTS rendered jsonb;
