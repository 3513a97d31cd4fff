-- migrate: no-transaction
-- A fork records the parent's version it forked at. parent_id is ON DELETE SET NULL, so a fork
-- whose parent was deleted keeps its fork_version with no parent: allowed.
--
-- Lock-safe and re-runnable as 0003: added NOT VALID (brief lock, no scan), then validated in
-- its own statement under SHARE UPDATE EXCLUSIVE.
ALTER TABLE contexts
    -- squawk-ignore ban-drop-constraint
    DROP CONSTRAINT IF EXISTS contexts_fork_pair,
    ADD CONSTRAINT contexts_fork_pair CHECK (parent_id IS NULL OR fork_version IS NOT NULL) NOT VALID;

ALTER TABLE contexts VALIDATE CONSTRAINT contexts_fork_pair;
