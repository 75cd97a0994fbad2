-- Full pass: facts → consolidated → memory → v2 sections, with its own status.
ALTER TABLE import_jobs
    ADD COLUMN IF NOT EXISTS sample jsonb,   -- ingest's sample of the richest conversations (quick pass and v2)
    ADD COLUMN IF NOT EXISTS full_pass_status text NOT NULL DEFAULT 'pending'
        CHECK (full_pass_status IN ('pending', 'processing', 'complete', 'failed', 'skipped')),
    ADD COLUMN IF NOT EXISTS full_pass_stage text,     -- facts | consolidating | memory | sections
    ADD COLUMN IF NOT EXISTS full_pass_error text,
    ADD COLUMN IF NOT EXISTS full_pass_started_at timestamptz,
    ADD COLUMN IF NOT EXISTS full_pass_finished_at timestamptz,
    ADD COLUMN IF NOT EXISTS full_pass_moved_at timestamptz,   -- last progress: the reconciler's clock
    ADD COLUMN IF NOT EXISTS full_pass_redrives integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS extraction_total integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS extraction_done integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS facts_total integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS consolidated_total integer NOT NULL DEFAULT 0;

-- One row per extraction chunk (medium tier) once the LLM has read it. Its
-- presence is what "this chunk has its facts" means: counted, never incremented.
CREATE TABLE IF NOT EXISTS fact_extractions (
    job_id      text NOT NULL,
    chunk_id    uuid NOT NULL,
    status      text NOT NULL CHECK (status IN ('done', 'failed')),
    facts       integer NOT NULL DEFAULT 0,
    attempts    integer NOT NULL DEFAULT 1,
    error       text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, chunk_id)
);

CREATE TABLE IF NOT EXISTS facts (
    job_id          text NOT NULL,
    fact_id         uuid NOT NULL,           -- uuid5(chunk, ordinal): same chunk, same ids
    user_id         text NOT NULL,
    chunk_id        uuid NOT NULL,
    conversation_id text NOT NULL,
    message_ids     text[] NOT NULL,
    category        text NOT NULL,
    text            text NOT NULL,
    subject         text NOT NULL,
    project         text,
    date            text,
    context         text,
    message_at      timestamptz,
    ordinal         integer NOT NULL,
    PRIMARY KEY (job_id, fact_id)            -- a re-import of the same export is a new set of rows
);
CREATE INDEX IF NOT EXISTS facts_chunk_idx ON facts (chunk_id);

CREATE TABLE IF NOT EXISTS consolidated_facts (
    job_id      text NOT NULL,
    user_id     text NOT NULL,
    key         text NOT NULL,
    category    text NOT NULL,
    position    integer NOT NULL,
    fact        jsonb NOT NULL,              -- models.facts.ConsolidatedFact
    PRIMARY KEY (job_id, key)
);

CREATE TABLE IF NOT EXISTS memories (
    job_id      text PRIMARY KEY,
    user_id     text NOT NULL,
    memory_md   text NOT NULL,
    offline     boolean NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Set when the facts agent saw chunks of this job before its size was known:
-- those chunks are re-driven when chunking completes.
ALTER TABLE import_jobs ADD COLUMN IF NOT EXISTS full_pass_deferred boolean NOT NULL DEFAULT false;
