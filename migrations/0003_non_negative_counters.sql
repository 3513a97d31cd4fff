-- Counters maintained by the application can never be negative; a bug that makes them so
-- should fail its write rather than corrupt the totals quietly.
ALTER TABLE contexts
    ADD CONSTRAINT contexts_message_count_non_negative CHECK (message_count >= 0),
    ADD CONSTRAINT contexts_total_tokens_non_negative CHECK (total_tokens >= 0),
    ADD CONSTRAINT contexts_latest_version_non_negative CHECK (latest_version >= 0);

ALTER TABLE messages
    ADD CONSTRAINT messages_token_count_non_negative CHECK (token_count IS NULL OR token_count >= 0);
