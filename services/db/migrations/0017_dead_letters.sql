-- Dead letters (issue 10): each message a stage set aside, and what the job knows of them.
--
-- The message itself (key, value, headers) is on the dead-letter topic; this
-- table holds where it came from, why it failed, and whether it was replayed,
-- so that `soulprint dlq replay --all` never sends one twice and a job shows
-- what holds it. No text of the person's is kept here: the error message is
-- one line of the exception (services/deadletters.py), never the payload.
CREATE TABLE IF NOT EXISTS dead_letters (
    letter_id       text PRIMARY KEY,            -- sha256 of stage, source and record (services/deadletters.Letter.id)
    user_id         text,
    job_id          text,
    stage           text NOT NULL,
    source_topic    text NOT NULL,
    source_partition integer NOT NULL,
    source_offset   bigint NOT NULL,
    error_class     text NOT NULL,
    error_message   text NOT NULL,
    attempts        integer NOT NULL,
    blocks_job      boolean NOT NULL DEFAULT true, -- counted on the job until replayed
    failed_at       timestamptz NOT NULL DEFAULT now(),
    replayed_at     timestamptz
);
CREATE INDEX IF NOT EXISTS dead_letters_job_idx ON dead_letters (job_id) WHERE replayed_at IS NULL;
SELECT soulprint_protect('dead_letters');

-- The job's view: dead letters not yet replayed (while > 0 the job is blocked: the reconciler leaves it
-- alone and it cannot complete the stage that lost a message), and the last reason.
ALTER TABLE import_jobs ADD COLUMN IF NOT EXISTS dead_letters integer NOT NULL DEFAULT 0;
ALTER TABLE import_jobs ADD COLUMN IF NOT EXISTS dead_letter_error text;

-- What made each soulprint version: prompt versions by task and the models that answered.
ALTER TABLE soulprint_versions ADD COLUMN IF NOT EXISTS prompt_versions jsonb;
ALTER TABLE soulprint_versions ADD COLUMN IF NOT EXISTS models jsonb;
