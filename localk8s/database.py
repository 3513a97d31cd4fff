"""A database prepared the way docs/deploy.md prepares one, on a throwaway server: deploy/roles.sql
run by the administrator, a password for each of its three roles, and the Secrets deploy/k8s
reads (kata-db-owner for the Job, kata-db-probe for the sidecar and wait-for-schema)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from localpg.throwaway import SUPERUSER_PASSWORD, PostgresServer

ROLES_SQL = Path(__file__).resolve().parents[1] / "deploy" / "roles.sql"
ROLES = {"owner": "kata_owner", "app": "kata_app", "probe": "kata_probe"}
# Throwaway loopback servers only; one password per role so a leak names its role.
PASSWORDS = {"owner": "owner-pw-7141", "app": "app-pw-7142", "probe": "probe-pw-7143"}

Secrets = Mapping[str, Mapping[str, str]]  # Secret name -> key -> value


@dataclass(frozen=True)
class DeployedDatabase:
    server: PostgresServer
    name: str

    def url(self, role: str) -> str:
        return self.server.url(self.name, user=ROLES[role], password=PASSWORDS[role])

    def secrets(self) -> Secrets:
        return {
            "kata-db-owner": {"DATABASE_URL": self.url("owner")},
            "kata-db-app": {"DATABASE_URL": self.url("app")},
            "kata-db-probe": {"DATABASE_URL": self.url("probe")},
        }


def apply_roles(
    server: PostgresServer, database: str, names: Mapping[str, str], passwords: Mapping[str, str]
) -> None:
    """Run deploy/roles.sql in `database` as an administrator would, the role names given as its
    psql variables ({owner, app, probe: name}), then set each role's password (what `\\password`
    does by hand)."""
    variables = [arg for kind, name in names.items() for arg in ("-v", f"{kind}={name}")]
    subprocess.run(
        [*server.psql_command(database), *variables, "-f", str(ROLES_SQL)],
        env={**os.environ, "PGPASSWORD": SUPERUSER_PASSWORD},
        capture_output=True,
        text=True,
        check=True,
    )
    for kind, name in names.items():
        server.psql(f"ALTER ROLE \"{name}\" PASSWORD '{passwords[kind]}'", database)


def deploy_database(server: PostgresServer) -> DeployedDatabase:
    """A fresh database on `server` with deploy/roles.sql applied (roles are made once per server)."""
    name = server.create_database()
    apply_roles(server, name, ROLES, PASSWORDS)
    return DeployedDatabase(server, name)


def one_url(url: str) -> Secrets:
    """Every Secret holding the same URL (a bad URL, a server without the roles)."""
    return {name: {"DATABASE_URL": url} for name in ("kata-db-owner", "kata-db-app", "kata-db-probe")}
