-- Append-only: never edit an applied migration; add the next number instead.
--
-- Full text scoped to one import inside the index. With one GIN index on
-- content_tsv over everyone's chunks, Postgres must either fetch every
-- person's matches for a word and throw away the others, or (what it chose)
-- read all of the person's chunks by job and test each: 0.5 s per search for
-- a person with 100,000 micro chunks among 1,000,000 (bench/search_bench.py).
-- A two-column GIN index (btree_gin: job_id as an equality key beside the
-- lexemes) intersects the job's entries with the word's, so a search reads
-- only the person's matching chunks, and the per-word document counts of the
-- ranking are index-only work.
CREATE EXTENSION IF NOT EXISTS btree_gin;
CREATE INDEX IF NOT EXISTS chunks_job_tsv_idx ON conversation_chunks USING gin (job_id, content_tsv);
DROP INDEX IF EXISTS chunks_tsv_idx;  -- every full-text query names its job

-- Under row-level security Postgres uses a condition as an index condition
-- only if its operator is LEAKPROOF (else it could see rows the policy hides
-- before the policy runs). `tsvector @@ tsquery` is not marked so, which left
-- the reader's full-text search testing each of the person's chunks in turn
-- (0.25 s for 100,000) instead of reading the GIN index. ts_match_vq returns
-- a boolean computed from its two arguments alone and raises no error that
-- depends on a row's content, so it is marked LEAKPROOF here. Only a
-- superuser may do so; elsewhere the search stays correct, only slower, and
-- the migration says so.
DO $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        ALTER FUNCTION ts_match_vq(tsvector, tsquery) LEAKPROOF;
    ELSE
        RAISE NOTICE 'not a superuser: ts_match_vq stays non-leakproof, so full-text search under row-level security cannot use its index (ask a superuser to run: ALTER FUNCTION ts_match_vq(tsvector, tsquery) LEAKPROOF)';
    END IF;
END $$;
