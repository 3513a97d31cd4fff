-- A fork records both its parent and the parent's version it forked at, or neither.
ALTER TABLE contexts
    ADD CONSTRAINT contexts_fork_pair CHECK ((parent_id IS NULL) = (fork_version IS NULL));
