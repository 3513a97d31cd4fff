-- migrate: no-transaction
-- HNSW cosine index for similarity search, built CONCURRENTLY so writes to messages go on.
-- A failed or cancelled concurrent build leaves an INVALID index behind, which
-- CREATE INDEX ... IF NOT EXISTS would then skip: drop it first so a retry rebuilds it.
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_index
        WHERE indexrelid = to_regclass('messages_embedding_idx') AND NOT indisvalid
    ) THEN
        RAISE NOTICE 'dropping invalid index messages_embedding_idx left by an earlier failed build';
        DROP INDEX messages_embedding_idx;
    END IF;
END
$$;

CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_embedding_idx
    ON messages USING hnsw (embedding vector_cosine_ops);

-- The build must have produced a valid index; otherwise fail so nothing is recorded.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_index
        WHERE indexrelid = to_regclass('messages_embedding_idx') AND indisvalid
    ) THEN
        RAISE EXCEPTION 'index messages_embedding_idx is missing or invalid after its build';
    END IF;
END
$$;
