-- Foundation: the status table, conversations and their chunks.
CREATE EXTENSION IF NOT EXISTS vector;

-- One row per import. Kept current in batches by every stage; the CLI and
-- `soulprint status` read nothing else to show progress.
CREATE TABLE IF NOT EXISTS import_jobs (
    job_id          text PRIMARY KEY,
    user_id         text NOT NULL,
    source_uri      text NOT NULL,
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'parsing', 'chunking', 'quick_ready', 'complete', 'failed')),
    stage           text NOT NULL DEFAULT 'queued',
    progress        real NOT NULL DEFAULT 0,          -- percent, 0..100
    error           text,
    error_code      text,
    -- who holds the current stage, so a redelivered event cannot start it twice
    claimed_by      text,
    claimed_at      timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    -- totals known once ingest has read the whole export
    ingest_done     boolean NOT NULL DEFAULT false,
    format          text,
    bytes_total     bigint,
    bytes_read      bigint NOT NULL DEFAULT 0,
    conversations   integer NOT NULL DEFAULT 0,      -- imported (emitted) so far / in total
    messages        integer NOT NULL DEFAULT 0,
    excluded        integer NOT NULL DEFAULT 0,      -- is_do_not_remember
    empty           integer NOT NULL DEFAULT 0,
    newest_message_at timestamptz,
    conversations_chunked integer NOT NULL DEFAULT 0,
    chunks_micro    integer NOT NULL DEFAULT 0,
    chunks_medium   integer NOT NULL DEFAULT 0,
    chunks_macro    integer NOT NULL DEFAULT 0,
    stage_times     jsonb NOT NULL DEFAULT '{}'::jsonb,  -- {"parsing": {"started": .., "finished": ..}}
    profile         jsonb,                                -- custom instructions / saved memory hints
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX IF NOT EXISTS import_jobs_user_idx ON import_jobs (user_id, created_at DESC);
CREATE INDEX IF NOT EXISTS import_jobs_open_idx ON import_jobs (status) WHERE status NOT IN ('complete', 'failed');

-- Metadata per imported conversation. Keyed by (user, conversation): a person
-- re-importing a newer export updates rows instead of duplicating them.
CREATE TABLE IF NOT EXISTS conversations (
    user_id         text NOT NULL,
    conversation_id text NOT NULL,
    job_id          text NOT NULL,
    title           text,
    source          text NOT NULL,
    created_at      timestamptz,
    updated_at      timestamptz,
    message_count   integer NOT NULL,
    newest_message_at timestamptz,
    chunks_micro    integer NOT NULL DEFAULT 0,
    chunks_medium   integer NOT NULL DEFAULT 0,
    chunks_macro    integer NOT NULL DEFAULT 0,
    chunked_job_id  text,        -- the job whose chunker last finished this conversation
    imported_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, conversation_id)
);
CREATE INDEX IF NOT EXISTS conversations_job_idx ON conversations (job_id);

CREATE TABLE IF NOT EXISTS conversation_chunks (
    chunk_id        uuid PRIMARY KEY,                 -- uuid5(user, conversation, tier, index)
    user_id         text NOT NULL,
    job_id          text NOT NULL,
    conversation_id text NOT NULL,
    conversation_title text,
    tier            text NOT NULL CHECK (tier IN ('micro', 'medium', 'macro')),
    chunk_index     integer NOT NULL,
    content         text NOT NULL,
    token_count     integer NOT NULL,
    message_ids     text[] NOT NULL,
    message_at      timestamptz,                      -- newest message covered
    created_at      timestamptz NOT NULL DEFAULT now(),
    is_recent       boolean NOT NULL DEFAULT false,   -- relative to the export's newest message
    embedding       vector,                           -- filled by the embedding stage
    content_tsv     tsvector GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED,
    UNIQUE (user_id, conversation_id, tier, chunk_index)
);
CREATE INDEX IF NOT EXISTS chunks_job_idx ON conversation_chunks (job_id, tier);
CREATE INDEX IF NOT EXISTS chunks_user_idx ON conversation_chunks (user_id, tier);
CREATE INDEX IF NOT EXISTS chunks_tsv_idx ON conversation_chunks USING gin (content_tsv);
