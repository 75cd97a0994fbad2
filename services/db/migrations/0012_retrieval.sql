-- Append-only: never edit an applied migration; add the next number instead.
--
-- HNSW indexes for the vector side of search, one per (import, embedding
-- space), for imports with many vectors only (services/db/search.py).
--
-- Measured on this machine (bench/README.md, "Retrieval quality"): with one
-- HNSW index over a whole space, every vector the embedding stage writes is
-- also an insert into that graph, and the stage fell from ~7,000 rows/s to
-- ~120 rows/s, far below the rate chunking makes micro chunks. A partial index
-- per large import (`WHERE job_id = '<job>' AND model = '<space>'`) is built
-- once, in bulk and CONCURRENTLY, after that import's embedding is complete
-- (the reconciler's pass; nothing is inserted into it afterwards), and holds
-- that person's vectors only: recall cannot depend on how many other people
-- share the table, by construction. Small imports are searched exactly.
--
-- This table says which index serves which import and space, so the search
-- (as the reader, under row-level security) picks its path from one row, and
-- indexes of retired imports or replaced spaces are found and dropped.
CREATE TABLE IF NOT EXISTS search_indexes (
    job_id      text NOT NULL,
    space       text NOT NULL,             -- models.embedding.EmbeddingSpace.space_id
    index_name  text NOT NULL UNIQUE,
    vectors     integer NOT NULL,          -- the import's vectors in the space when it was built
    built_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, space)
);
SELECT soulprint_protect('search_indexes');
GRANT SELECT ON search_indexes TO soulprint_reader;
