-- Append-only: never edit an applied migration; add the next number instead.
--
-- Document frequencies of one import's words, counted once instead of per query.
--
-- Full text weighs each query term by ln(1 + N / (1 + df)) over the person's
-- micro chunks. Counting df per query cost ~15 ms a common word for a person
-- with 100,000 chunks (bench/README.md, "Search at scale"), and the plan of
-- which rows to read (domain.retrieval.plan_full_text) needs the counts before
-- it reads any row. An import's chunks never change once it is current, so the
-- reconciler's pass (services/db/search.py, maintain_indexes) counts every word
-- of each large current import once (ts_stat) and drops the counts of imports
-- no longer current. Small imports are counted per query (cheap).
--
-- One row per (import, word); the row with the empty lexeme (no word is empty)
-- says the import is counted and holds its number of micro chunks, so the
-- counts of an import appear whole or not at all (one transaction writes them).
-- Lexemes sort in "C" order so that a stem's prefix term ('move':*) is a range.
CREATE TABLE IF NOT EXISTS search_terms (
    job_id   text NOT NULL,
    user_id  text NOT NULL,
    lexeme   text COLLATE "C" NOT NULL,
    df       integer NOT NULL,             -- micro chunks with the word ('' : all of them)
    PRIMARY KEY (job_id, lexeme)
);
SELECT soulprint_protect('search_terms');
GRANT SELECT ON search_terms TO soulprint_reader;
-- The reconciler's pass looks up which imports are counted on every run.
CREATE INDEX IF NOT EXISTS search_terms_counted_idx ON search_terms (job_id) WHERE lexeme = '';
