-- LLM layer: response cache and usage accounting (services/llm/cache.py, accounting.py).

-- Successful answers keyed by sha256(provider, model, system, messages, schema, max_tokens):
-- an identical request is never paid for twice.
CREATE TABLE IF NOT EXISTS llm_cache (
    key        text PRIMARY KEY,
    provider   text NOT NULL,
    model      text NOT NULL,
    response   jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Running totals of what was paid, one row per (job, stage, provider, model).
-- Rows accumulate on purpose (a re-run stage paid twice). Calls served from
-- llm_cache add cache_hits and nothing else. job_id '' = no job.
CREATE TABLE IF NOT EXISTS llm_usage (
    job_id                      text NOT NULL,
    stage                       text NOT NULL,
    provider                    text NOT NULL,
    model                       text NOT NULL,
    requests                    bigint NOT NULL DEFAULT 0,
    cache_hits                  bigint NOT NULL DEFAULT 0,
    throttled                   bigint NOT NULL DEFAULT 0,
    input_tokens                bigint NOT NULL DEFAULT 0,
    output_tokens               bigint NOT NULL DEFAULT 0,
    cache_creation_input_tokens bigint NOT NULL DEFAULT 0,
    cache_read_input_tokens     bigint NOT NULL DEFAULT 0,
    cost_usd                    numeric NOT NULL DEFAULT 0,
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, stage, provider, model)
);
