"""What the application's and the probe's roles may be and hold: docs/deploy.md's "Roles" table
as data. What each role may hold (`ALLOWED`) among every privilege `up` governs (`PRIVILEGES`),
and the predefined roles a named role may not belong to (`DATA_ROLES`). The catalog is read
against it by migrator/role_memberships.py (what a role is and belongs to, refused before anything
is applied) and migrator/extra_privileges.py (what a role holds beyond its column, taken back or
refused)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

from migrator.settings import Named

DML: Final = ("SELECT", "INSERT", "UPDATE", "DELETE")
TABLE_PRIVILEGES: Final = (*DML, "TRUNCATE", "REFERENCES", "TRIGGER")
# MAINTAIN (VACUUM, ANALYZE, CLUSTER, REINDEX, LOCK TABLE) exists from PostgreSQL 17 on.
MAINTAIN_FROM: Final = 17
# Every privilege of each kind of object `up` governs in the schema.
PRIVILEGES: Final = {
    "schema": ("USAGE", "CREATE"),
    "table": TABLE_PRIVILEGES,
    "ledger": TABLE_PRIVILEGES,
    "sequence": ("USAGE", "SELECT", "UPDATE"),
}
# What each role may hold ("gets"); every other privilege above is one it never gets.
ALLOWED: Final = {
    "app": {"schema": ("USAGE",), "table": DML, "ledger": (), "sequence": ("USAGE",)},
    "probe": {"schema": ("USAGE",), "table": (), "ledger": ("SELECT",), "sequence": ()},
}
# Predefined roles (PostgreSQL 14-18) whose members read or write every table, directly or
# through the server's files and programs, or lock and rewrite every table.
DATA_ROLES: Final = {
    "pg_read_all_data": "reads every table",
    "pg_write_all_data": "writes every table",
    "pg_read_server_files": "reads the server's files, every table's data among them",
    "pg_write_server_files": "writes the server's files",
    "pg_execute_server_program": "runs programs as the server's operating-system user",
    "pg_maintain": "may lock, rewrite and reindex every table",
}


def forbidden(named: Sequence[Named], server_major: int) -> str:
    """(role, kind, privilege) for every privilege a named role must never hold, as JSON."""
    rows = []
    for n in named:
        for kind, privileges in PRIVILEGES.items():
            every = (
                (*privileges, "MAINTAIN")
                if kind in ("table", "ledger") and server_major >= MAINTAIN_FROM
                else privileges
            )
            rows += [
                {"role": n.role, "kind": kind, "privilege": p}
                for p in every
                if p not in ALLOWED[n.side][kind]
            ]
    return json.dumps(rows)
