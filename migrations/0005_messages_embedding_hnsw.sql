-- migrate: no-transaction
-- HNSW cosine index for similarity search, built CONCURRENTLY so writes to messages go on.
-- A failed or cancelled concurrent build leaves an INVALID index behind, which
-- CREATE INDEX ... IF NOT EXISTS would then skip. Move such a leftover out of the way (a rename
-- locks only the index, SHARE UPDATE EXCLUSIVE, where a DROP INDEX in a DO block would take
-- ACCESS EXCLUSIVE on messages), then drop it concurrently; a valid index is kept as it is.
-- The first drop clears a leftover of a run that stopped between the rename and its drop.
DROP INDEX CONCURRENTLY IF EXISTS messages_embedding_idx_invalid;

DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_index
        WHERE indexrelid = to_regclass('messages_embedding_idx') AND NOT indisvalid
    ) THEN
        RAISE NOTICE 'dropping invalid index messages_embedding_idx left by an earlier failed build';
        ALTER INDEX messages_embedding_idx RENAME TO messages_embedding_idx_invalid;
    END IF;
END
$$;

DROP INDEX CONCURRENTLY IF EXISTS messages_embedding_idx_invalid;

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
