-- Listing live contexts filters on deleted_at, as messages already can.
CREATE INDEX contexts_deleted_at_idx ON contexts (deleted_at);
