-- migrate: no-transaction
-- Listing a context's forks (WHERE parent_id = $1) and the ON DELETE SET NULL of a parent's hard
-- delete (UPDATE contexts SET parent_id = NULL WHERE parent_id = $1) scan every context without
-- it. Partial: most contexts are no fork, and both lookups compare parent_id with a value, which
-- implies parent_id IS NOT NULL, so the planner uses it for both. Built CONCURRENTLY so the
-- application's reads and writes of contexts go on during the build. An index only: the foreign
-- key and its ON DELETE SET NULL stay as 0001 made them.
-- A failed or cancelled concurrent build leaves an INVALID index behind, which
-- CREATE INDEX ... IF NOT EXISTS would then skip. Move such a leftover out of the way (a rename
-- locks only the index, SHARE UPDATE EXCLUSIVE, where a DROP INDEX in a DO block would take
-- ACCESS EXCLUSIVE on contexts), then drop it concurrently; a valid index is kept as it is.
-- The first drop clears a leftover of a run that stopped between the rename and its drop.
DROP INDEX CONCURRENTLY IF EXISTS contexts_parent_id_idx_invalid;

DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_index
        WHERE indexrelid = to_regclass('contexts_parent_id_idx') AND NOT indisvalid
    ) THEN
        RAISE NOTICE 'dropping invalid index contexts_parent_id_idx left by an earlier failed build';
        ALTER INDEX contexts_parent_id_idx RENAME TO contexts_parent_id_idx_invalid;
    END IF;
END
$$;

DROP INDEX CONCURRENTLY IF EXISTS contexts_parent_id_idx_invalid;

CREATE INDEX CONCURRENTLY IF NOT EXISTS contexts_parent_id_idx
    ON contexts (parent_id) WHERE parent_id IS NOT NULL;

-- The build must have produced a valid index; otherwise fail so nothing is recorded.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_index
        WHERE indexrelid = to_regclass('contexts_parent_id_idx') AND indisvalid
    ) THEN
        RAISE EXCEPTION 'index contexts_parent_id_idx is missing or invalid after its build';
    END IF;
END
$$;
