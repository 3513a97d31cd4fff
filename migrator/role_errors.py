"""The errors of roles: a role named for the application or the probe is missing or refused (exit
2), the connected role lacks a privilege (exit 10). Their codes are in migrator/errors.py's one
table."""

from __future__ import annotations

from collections.abc import Sequence

from migrator.errors import MigratorError


class RoleMissing(MigratorError):
    """MIGRATOR_APP_ROLE / MIGRATOR_PROBE_ROLE name no role (or an unusable one): a setting to fix,
    found right after connecting, before the lock and before anything is applied."""

    exit_code = 2
    event = "role_missing"


class RoleRefused(MigratorError):
    """MIGRATOR_APP_ROLE / MIGRATOR_PROBE_ROLE name a role that holds, or could take, more than
    docs/deploy.md's "Roles" table allows, in a way only an administrator can undo (a membership, an
    attribute, a grant the owner did not make): a setting or a role to fix, not a retry."""

    exit_code = 2
    event = "role_refused"

    def __init__(self, problems: Sequence[str], *, changed: bool) -> None:
        self.problems = tuple(problems)
        outcome = (
            "the migrations were applied and recorded, the grants left as they were"
            if changed
            else "nothing was changed"
        )
        super().__init__(
            f"{'; '.join(problems)}. `up` refuses such a role for the application or the probe "
            f"(docs/deploy.md, Roles); {outcome}"
        )


class InsufficientPrivilege(MigratorError):
    """The connected role lacks a privilege. A GRANT, or the right role's credentials, fixes it;
    a retry cannot, hence a code of its own (README.md says why 10)."""

    exit_code = 10
    event = "insufficient_privilege"

    def __init__(
        self, role: str, missing: Sequence[str], fix: str, *, where: str = "", advice: str = ""
    ) -> None:
        self.role = role
        self.missing = tuple(missing)
        self.fix = fix
        super().__init__(
            f"permission denied: role {role} lacks {'; '.join(missing)}{where}; "
            + (f"{advice} " if advice else "")
            + f"to fix it run {fix}"
        )
