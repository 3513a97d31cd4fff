-- kata-context's schema as the application created it (contexts, message_role, messages).
-- The vector extension is not created here: the migrator's preflight installs it when this
-- role may, or stops with the statement an owner has to run.

CREATE TYPE message_role AS ENUM ('user', 'assistant', 'system', 'tool');

CREATE TABLE contexts (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name           text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    message_count  integer NOT NULL DEFAULT 0,
    total_tokens   integer NOT NULL DEFAULT 0,
    latest_version bigint NOT NULL DEFAULT 0,
    parent_id      uuid REFERENCES contexts (id) ON DELETE SET NULL,
    fork_version   bigint,
    policy_config  jsonb,
    deleted_at     timestamptz
);

CREATE TABLE messages (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    context_id             uuid NOT NULL REFERENCES contexts (id) ON DELETE CASCADE,
    version                bigint NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    role                   message_role NOT NULL,
    content                text NOT NULL,
    tool_call_id           text,
    tool_name              text,
    token_count            integer,
    model                  text,
    deleted_at             timestamptz,
    embedding              vector(1536),
    compacted_at           timestamptz,
    compacted_into_version bigint,
    CONSTRAINT messages_context_version_unique UNIQUE (context_id, version)
);

CREATE INDEX messages_deleted_at_idx ON messages (deleted_at);
