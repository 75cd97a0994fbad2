-- Message Batches (services/llm/batch.py, batch_store.py): which batch each
-- submitted request went into, so a request re-driven while its batch is still
-- pending resumes polling that batch instead of paying for a second one.
-- custom_id is the request's response-cache key. A row is deleted by the
-- worker that reads its result (that worker accounts for it).
CREATE TABLE IF NOT EXISTS llm_batch_requests (
    endpoint     text NOT NULL,              -- the API the batch id belongs to
    batch_id     text NOT NULL,
    custom_id    text NOT NULL,
    job_id       text NOT NULL DEFAULT '',
    submitted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (endpoint, batch_id, custom_id)
);
CREATE INDEX IF NOT EXISTS llm_batch_requests_lookup
    ON llm_batch_requests (endpoint, custom_id, submitted_at DESC);
