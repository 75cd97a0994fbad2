-- Append-only: never edit an applied migration; add the next number instead.
--
-- Tokens, the reader role, row-level security and the query service's view.
--
-- The query service reads as `soulprint_reader` (NOLOGIN): the pipeline's
-- connection switches to it per transaction (SET LOCAL ROLE, services/db/
-- access.py Reader) and names the person in `soulprint.user_id`. Every
-- per-person table has ROW LEVEL SECURITY enabled and forced, a policy letting
-- the role that ran this migration (the pipeline, the tables' owner) do
-- everything, and a SELECT policy letting the reader see the named person's
-- rows only. An unset person matches nothing. So a query that forgets (or
-- overrides) its own `user_id = $1` still returns nothing foreign.
--
-- A superuser (the embedded cluster's `postgres`, the official image's
-- POSTGRES_USER) bypasses RLS even when forced: the owner policy is what keeps
-- a non-superuser owner (a managed Postgres) working; the reader is never a
-- superuser, so its limits hold either way. A later per-person table calls
-- soulprint_protect('its_table') in its own migration.

-- Roles are cluster-wide: several databases of one cluster may be migrated at
-- once, so a concurrent creator wins and the others go on.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'soulprint_reader') THEN
        CREATE ROLE soulprint_reader NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END $$;

-- The migrating role must be able to SET ROLE to the reader. A role that did
-- not create it (and is no superuser) needs an administrator to grant it.
DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'soulprint_reader', 'MEMBER') THEN
        EXECUTE format('GRANT soulprint_reader TO %I', current_user);
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN
        NULL;
    WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'role % cannot grant itself soulprint_reader', current_user
            USING HINT = format('as an administrator: GRANT soulprint_reader TO %I', current_user);
END $$;

-- Person tokens: only the SHA-256 of a token is stored; the plaintext is shown once.
CREATE TABLE IF NOT EXISTS api_tokens (
    token_id    text PRIMARY KEY,
    token_hash  text NOT NULL UNIQUE,            -- hex SHA-256 of the whole token
    user_id     text NOT NULL,
    label       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX IF NOT EXISTS api_tokens_user_idx ON api_tokens (user_id);

-- The query service's own view of each person's current soulprint, from the
-- `sections` and `memory` topics (services/db/query_view.py): the newest job
-- wins, and within a job the newest version; MEMORY stays with its job.
CREATE TABLE IF NOT EXISTS query_soulprints (
    user_id     text PRIMARY KEY,
    job_id      text NOT NULL,
    version     integer NOT NULL,
    sections    jsonb NOT NULL,                  -- {"SOUL": markdown, "IDENTITY": .., "USER", "AGENTS", "TOOLS"}
    memory_md   text,
    offline     boolean NOT NULL,
    made_at     timestamptz NOT NULL,            -- when the pipeline made this version
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO query_soulprints (user_id, job_id, version, sections, memory_md, offline, made_at, updated_at)
SELECT s.user_id, s.job_id, s.version,
       jsonb_build_object('SOUL', s.soul_md, 'IDENTITY', s.identity_md, 'USER', s.user_md,
                          'AGENTS', s.agents_md, 'TOOLS', s.tools_md),
       s.memory_md, s.offline, coalesce(v.created_at, s.updated_at), s.updated_at
  FROM soulprints s
  LEFT JOIN soulprint_versions v ON (v.user_id, v.job_id, v.version) = (s.user_id, s.job_id, s.version)
ON CONFLICT (user_id) DO NOTHING;

-- RLS for one per-person table: by its user_id, or (keyed by job only) by
-- the job's person in import_jobs. The job form is `= ANY (ARRAY(subquery))`:
-- an InitPlan run once per query (the person's few job ids), then an index
-- condition on job_id, instead of a subquery per row.
CREATE OR REPLACE FUNCTION soulprint_protect(t regclass) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    person text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = t AND attname = 'user_id' AND NOT attisdropped) THEN
        person := 'user_id = current_setting(''soulprint.user_id'', true)';
    ELSIF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = t AND attname = 'job_id' AND NOT attisdropped) THEN
        person := 'job_id = ANY (ARRAY(SELECT j.job_id FROM import_jobs j'
                  ' WHERE j.user_id = current_setting(''soulprint.user_id'', true)))';
    ELSE
        RAISE EXCEPTION '% has neither user_id nor job_id: not a per-person table', t;
    END IF;
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('DROP POLICY IF EXISTS pipeline ON %s', t);
    EXECUTE format('CREATE POLICY pipeline ON %s TO CURRENT_USER USING (true) WITH CHECK (true)', t);
    EXECUTE format('DROP POLICY IF EXISTS person ON %s', t);
    EXECUTE format('CREATE POLICY person ON %s FOR SELECT TO soulprint_reader USING (%s)', t, person);
END $$;

-- Every table holding a person's rows: each one with a user_id or a job_id.
-- (llm_cache holds answers keyed by a request hash, with no person on the
-- row: the reader has no grant on it.)
DO $$
DECLARE t regclass;
BEGIN
    FOR t IN SELECT DISTINCT c.oid::regclass FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
              WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace
                AND a.attname IN ('user_id', 'job_id') AND NOT a.attisdropped
    LOOP
        PERFORM soulprint_protect(t);
    END LOOP;
END $$;

-- What the query service reads, and nothing else (tokens, payloads, LLM
-- tables and the pipeline's bookkeeping stay out of its reach).
GRANT SELECT ON import_jobs, people, conversations, conversation_chunks, chunk_embeddings, facts,
    consolidated_facts, memories, query_soulprints TO soulprint_reader;
