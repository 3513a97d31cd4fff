-- The three roles of kata-context's database. Run once per database by an administrator:
-- a superuser on your own PostgreSQL; on Neon the project's owner role (see docs/deploy.md).
--
--   psql "postgresql://ADMIN@HOST:5432/kata" -v ON_ERROR_STOP=1 -f deploy/roles.sql
--   psql "postgresql://ADMIN@HOST:5432/kata" -c '\password kata_owner'   # and kata_app, kata_probe
--
-- Role names are psql variables (-v owner=... -v app=... -v probe=...); the defaults below.
-- Passwords are deliberately not in this file: `\password` hashes them on the client, so they
-- reach neither the server's log nor your shell history. Safe to run again: it creates only
-- what is missing.
--
--   owner (kata_owner)  runs `kata-migrate up` (the Job): owns the tables, types and ledger it creates.
--   app   (kata_app)    the API: SELECT/INSERT/UPDATE/DELETE on the application's tables, granted by
--                       `up` with MIGRATOR_APP_ROLE=kata_app; no DDL, no access to the ledger.
--   probe (kata_probe)  the probe sidecar and `kata-migrate wait`: reads the ledger (granted by `up`
--                       with MIGRATOR_PROBE_ROLE=kata_probe) and the catalogs; no table data.
--
-- Grant the app and probe roles no role and no attribute: `up` refuses (exit 2) one that is a
-- superuser, has BYPASSRLS, or is a member of the owner, of the other, or of a role that reads or
-- writes every table (pg_read_all_data, ...), and revokes any other privilege beyond the above.

\if :{?owner}
\else
  \set owner kata_owner
\endif
\if :{?app}
\else
  \set app kata_app
\endif
\if :{?probe}
\else
  \set probe kata_probe
\endif

-- Roles, each created only when missing (on Neon the owner already exists: made in the console).
SELECT format('CREATE ROLE %I LOGIN', r)
FROM unnest(ARRAY[:'owner', :'app', :'probe']) AS r
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) \gexec

-- The probe only ever reads: make that the default for every transaction it starts.
SELECT format('ALTER ROLE %I SET default_transaction_read_only = on', :'probe') \gexec

-- Who may connect: these three (and superusers); nobody else by default.
SELECT format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database()) \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I, %I, %I', current_database(), :'owner', :'app', :'probe') \gexec

-- The schema: only the owner creates objects in it (PostgreSQL 14 and older let everyone);
-- the application and the probe may look names up in it.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SELECT format('GRANT USAGE, CREATE ON SCHEMA public TO %I', :'owner')
WHERE NOT has_schema_privilege(:'owner', 'public', 'CREATE') \gexec
SELECT format('GRANT USAGE ON SCHEMA public TO %I, %I', :'app', :'probe') \gexec

-- pgvector is not a trusted extension: the owner role cannot create it, an administrator does.
CREATE EXTENSION IF NOT EXISTS vector;
