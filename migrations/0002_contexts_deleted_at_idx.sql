-- migrate: no-transaction
-- Listing live contexts filters on deleted_at, as messages already can. Built CONCURRENTLY so
-- the application's writes to contexts go on during the build.
-- A failed or cancelled concurrent build leaves an INVALID index behind, which
-- CREATE INDEX ... IF NOT EXISTS would then skip. Move such a leftover out of the way (a rename
-- locks only the index, SHARE UPDATE EXCLUSIVE, where a DROP INDEX in a DO block would take
-- ACCESS EXCLUSIVE on contexts), then drop it concurrently; a valid index is kept as it is.
-- The first drop clears a leftover of a run that stopped between the rename and its drop.
DROP INDEX CONCURRENTLY IF EXISTS contexts_deleted_at_idx_invalid;

DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_index
        WHERE indexrelid = to_regclass('contexts_deleted_at_idx') AND NOT indisvalid
    ) THEN
        RAISE NOTICE 'dropping invalid index contexts_deleted_at_idx left by an earlier failed build';
        ALTER INDEX contexts_deleted_at_idx RENAME TO contexts_deleted_at_idx_invalid;
    END IF;
END
$$;

DROP INDEX CONCURRENTLY IF EXISTS contexts_deleted_at_idx_invalid;

CREATE INDEX CONCURRENTLY IF NOT EXISTS contexts_deleted_at_idx ON contexts (deleted_at);

-- The build must have produced a valid index; otherwise fail so nothing is recorded.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_index
        WHERE indexrelid = to_regclass('contexts_deleted_at_idx') AND indisvalid
    ) THEN
        RAISE EXCEPTION 'index contexts_deleted_at_idx is missing or invalid after its build';
    END IF;
END
$$;
