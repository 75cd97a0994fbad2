-- Append-only: never edit an applied migration; add the next number instead.
--
-- Erasure (issue 10 item 5; services/db/erasure.py, services/erasure.py).
--
-- The deletion ledger: one row per person ever erased, keyed by a hash of the
-- id (services/db/erasure.person_hash), never the id in clear. Every stage's
-- entry (agents/containment) looks it up, so a replayed or redelivered event
-- of an erased person writes nothing back. It only grows; erasing again moves
-- erased_at on (a person who came back and is erased a second time).
CREATE TABLE IF NOT EXISTS erased_people (
    person_hash  text PRIMARY KEY,
    erased_at    timestamptz NOT NULL DEFAULT now()
);

-- Which person's data each cached LLM answer (llm_cache, keyed by a request
-- hash, no owner on the row) was made from: written where the cache is
-- written and read (services/db/llm.py), so erasing a person deletes the
-- cached answers their requests produced. An answer two people's identical
-- requests share has a row for each and goes with the first of them erased.
-- No foreign key: a link may be written while its entry is being replaced.
CREATE TABLE IF NOT EXISTS llm_cache_people (
    key      text NOT NULL,
    user_id  text NOT NULL,
    PRIMARY KEY (key, user_id)
);
CREATE INDEX IF NOT EXISTS llm_cache_people_user_idx ON llm_cache_people (user_id);
SELECT soulprint_protect('llm_cache_people');
