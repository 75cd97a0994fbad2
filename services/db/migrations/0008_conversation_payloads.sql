-- Append-only: never edit an applied migration; add the next number instead.
--
-- Conversations too large for an event (SOULPRINT_INLINE_CONVERSATION_BYTES)
-- travel by reference: ingest stores the messages here, the event names the
-- row by its key, and the chunker deletes the row in the transaction that
-- writes the conversation's chunks. A failed or retired job's rows go with
-- its other rows; a completed job has none left. Keyed like the job's
-- conversations, so a redelivered or re-driven conversation finds its row.
-- `payload` is the messages as compact JSON lists, [[id, role, text, time],
-- ...], stored uncompressed (EXTERNAL): a row lives seconds to minutes and
-- compressing tens of MB costs more than the disk it saves.
CREATE TABLE IF NOT EXISTS conversation_payloads (
    job_id           text NOT NULL,
    conversation_id  text NOT NULL,
    user_id          text NOT NULL,
    payload          bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, conversation_id)
);
ALTER TABLE conversation_payloads ALTER COLUMN payload SET STORAGE EXTERNAL;

-- What the parser cleaned out of the export's texts: NUL characters removed
-- (Postgres text cannot hold them) and lone UTF-16 surrogates replaced with
-- U+FFFD (not a character; no encoder can write one), per job.
ALTER TABLE import_jobs
    ADD COLUMN IF NOT EXISTS nul_stripped integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS surrogates_replaced integer NOT NULL DEFAULT 0;
