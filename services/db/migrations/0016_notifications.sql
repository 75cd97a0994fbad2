-- Append-only: never edit an applied migration; add the next number instead.
--
-- Notices (a transactional outbox) and webhooks (endpoints and their deliveries).
--
-- A notice is written in the same transaction as the state change that causes
-- it, so a committed change always has its notice and a rolled-back one never
-- does. Job notices come from a trigger on import_jobs (below) rather than from
-- each transition in services/db/jobs.py: a job can finish through a dozen
-- transitions (the last of the quick pass, the full pass or the embedding to
-- end, a retirement, a failure), and a trigger sees every one of them, those
-- added later included, inside the transition's own transaction. Erasure
-- records `person.deleted` itself (services/db/notices.record_notice).
--
-- Ids are deterministic (soulprint_notice_id): a transition replayed, or an
-- erasure repeated with the same receipt, writes nothing new.

CREATE TABLE IF NOT EXISTS notices (
    notice_id     text PRIMARY KEY,                -- ntc_<sha256 of type and key>
    type          text NOT NULL,                   -- soulprint.quick_ready | .complete | .failed | person.deleted
    user_id       text NOT NULL,
    job_id        text,
    data          jsonb NOT NULL DEFAULT '{}',     -- ids and statuses only: never a person's text
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz                      -- sent to the `notices` topic by the relay
);
CREATE INDEX IF NOT EXISTS notices_unpublished_idx ON notices (created_at) WHERE published_at IS NULL;
SELECT soulprint_protect('notices');

-- Endpoints are the operator's, not a person's: no user_id, no person's data.
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    endpoint_id      text PRIMARY KEY,             -- ep_<random>
    url              text NOT NULL,
    secret           text NOT NULL,                -- whsec_<base64>: shown once at `webhook add`
    events           text[],                       -- NULL: every type
    enabled          boolean NOT NULL DEFAULT true,
    disabled_reason  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    disabled_at      timestamptz
);

-- One row per notice and endpoint. Retries are rows, not in-memory state: a
-- failing endpoint never holds up the agent's stream, and its retries survive
-- a restart. The body is fixed at fan-out: the same webhook-id and bytes on
-- every attempt (only the timestamp and signature are fresh).
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    delivery_id      text PRIMARY KEY,             -- the webhook-id: msg_<sha256 of notice and endpoint>
    notice_id        text NOT NULL,
    endpoint_id      text NOT NULL REFERENCES webhook_endpoints (endpoint_id) ON DELETE CASCADE,
    user_id          text NOT NULL,
    job_id           text,
    type             text NOT NULL,
    body             text NOT NULL,
    source_partition integer,                      -- where its notice was read (the dead letter names it)
    source_offset    bigint,
    status           text NOT NULL DEFAULT 'pending',  -- pending | delivered | dead | gone (endpoint disabled)
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_status      integer,                      -- the endpoint's last HTTP status (NULL: no answer)
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id);
SELECT soulprint_protect('webhook_deliveries');

CREATE OR REPLACE FUNCTION soulprint_notice_id(type text, key text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'ntc_' || left(encode(sha256(convert_to(type || ':' || key, 'UTF8')), 'hex'), 32)
$$;

-- The one writer of notices (the trigger below and record_notice both call it).
-- key: what makes the notice unique (the job for job notices).
CREATE OR REPLACE FUNCTION soulprint_record_notice(type text, user_id text, job_id text, data jsonb, key text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    id text := soulprint_notice_id(type, key);
BEGIN
    INSERT INTO notices (notice_id, type, user_id, job_id, data)
    VALUES (id, type, user_id, job_id, coalesce(data, '{}'::jsonb))
    ON CONFLICT (notice_id) DO NOTHING;
    RETURN id;
END $$;

-- "Done" exactly as models/jobs.Job.finished (what `soulprint import` waits
-- for): failed, or complete with the quick pass, the full pass and the
-- embedding all ended. tests/test_webhooks.py checks the two agree.
CREATE OR REPLACE FUNCTION soulprint_job_finished(j import_jobs) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT j.status = 'failed'
        OR (j.status = 'complete'
            AND j.quick_status IN ('ready', 'failed')
            AND j.full_pass_status IN ('complete', 'failed', 'skipped')
            AND j.embedding_status IN ('complete', 'failed', 'skipped'))
$$;

CREATE OR REPLACE FUNCTION soulprint_job_notices() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    base jsonb := jsonb_build_object('job_id', NEW.job_id, 'user_id', NEW.user_id);
BEGIN
    IF NEW.quick_status = 'ready' AND OLD.quick_status IS DISTINCT FROM 'ready' THEN
        PERFORM soulprint_record_notice('soulprint.quick_ready', NEW.user_id, NEW.job_id, base, NEW.job_id);
    END IF;
    IF NEW.status = 'failed' AND OLD.status IS DISTINCT FROM 'failed' THEN
        -- The kind of failure only: the message may quote the export.
        PERFORM soulprint_record_notice('soulprint.failed', NEW.user_id, NEW.job_id,
                                        base || jsonb_build_object('error_code', NEW.error_code), NEW.job_id);
    ELSIF soulprint_job_finished(NEW) AND NOT soulprint_job_finished(OLD) THEN
        -- Once per job: a re-embedding that ends again later writes nothing new.
        PERFORM soulprint_record_notice('soulprint.complete', NEW.user_id, NEW.job_id,
                                        base || jsonb_build_object('quick_status', NEW.quick_status,
                                                                   'full_pass_status', NEW.full_pass_status,
                                                                   'embedding_status', NEW.embedding_status),
                                        NEW.job_id);
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS import_jobs_notices ON import_jobs;
CREATE TRIGGER import_jobs_notices
    AFTER UPDATE OF status, quick_status, full_pass_status, embedding_status ON import_jobs
    FOR EACH ROW EXECUTE FUNCTION soulprint_job_notices();
