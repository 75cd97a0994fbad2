-- Quick pass: its status beside the import's, and the soulprint itself.
ALTER TABLE import_jobs
    ADD COLUMN IF NOT EXISTS quick_status text NOT NULL DEFAULT 'pending'
        CHECK (quick_status IN ('pending', 'running', 'ready', 'failed')),
    ADD COLUMN IF NOT EXISTS quick_error text,
    ADD COLUMN IF NOT EXISTS quick_ready_at timestamptz,
    ADD COLUMN IF NOT EXISTS quick_claimed_at timestamptz;

-- The person's current soulprint: what the query service reads. One row per
-- user, swapped whole (all five sections, the composite text and the version
-- in one statement), so a reader sees one version or the next, never a mix.
CREATE TABLE IF NOT EXISTS soulprints (
    user_id         text PRIMARY KEY,
    job_id          text NOT NULL,
    version         integer NOT NULL,          -- 1 = quick pass, 2 = rewritten with MEMORY
    sections        jsonb NOT NULL,            -- typed records, see models/sections.py
    soul_md         text NOT NULL,
    identity_md     text NOT NULL,
    user_md         text NOT NULL,
    agents_md       text NOT NULL,
    tools_md        text NOT NULL,
    memory_md       text,
    soulprint_text  text NOT NULL,
    offline         boolean NOT NULL,          -- produced by the deterministic offline provider
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Every version ever produced, for audit and rollback.
CREATE TABLE IF NOT EXISTS soulprint_versions (
    user_id         text NOT NULL,
    job_id          text NOT NULL,
    version         integer NOT NULL,
    sections        jsonb NOT NULL,
    memory_md       text,
    soulprint_text  text NOT NULL,
    offline         boolean NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, job_id, version)
);
