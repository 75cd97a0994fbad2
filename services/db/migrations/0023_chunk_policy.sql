-- Append-only: never edit an applied migration; add the next number instead.
--
-- The reader's policy on conversation_chunks, as a test no index answers.
--
-- Every reader query of chunks names the person's import (job_id), and a job
-- has one person, but the planner takes the policy's `user_id = ...` for a test
-- independent of the job's and, for a full-text search of a large person,
-- AND-ed its bitmap of all the person's chunks (100,000 entries from
-- chunks_user_idx, ~4 ms) with the few rows the words match, to remove none
-- (bench/README.md, "Search at scale"). As `(...) IS TRUE` the test is the
-- same row by row (user_id is NOT NULL) but is checked on the rows read
-- instead of steering which index reads them.
DROP POLICY IF EXISTS person ON conversation_chunks;
CREATE POLICY person ON conversation_chunks FOR SELECT TO soulprint_reader
    USING ((user_id = current_setting('soulprint.user_id', true)) IS TRUE);
