"""What a PostgreSQL error says about the server rather than about a file or a bug: the SQLSTATEs
the migrator decides on and what to do when the server is short of resources (a connection that
broke is pgconn.errors.is_connection_loss). Pure: no exit codes here (migrator/database_errors.py
maps them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

QUERY_CANCELED: Final = "57014"
LOCK_NOT_AVAILABLE: Final = "55P03"
READ_ONLY_TRANSACTION: Final = "25006"
# Class 53, insufficient resources: the server lacks something, the file or query is not at fault.
RESOURCE_ADVICE: Final[Mapping[str, str]] = {
    "53100": "the server is out of disk space: free space or grow the volume, then run again",
    "53200": (
        'the server is out of memory: for an index build lower MIGRATOR_MAINTENANCE_WORK_MEM, for "out of '
        'shared memory" raise max_locks_per_transaction, or give the server more memory, then run again'
    ),
    "53300": "no connection slot is free: end idle sessions or raise max_connections, then run again",
    "53400": "a server limit was reached (the message names it, e.g. temp_file_limit): raise it, run again",
}


def resource_advice(sqlstate: str | None) -> str | None:
    """What to do about a class 53 error; None for any other SQLSTATE."""
    if not sqlstate or not sqlstate.startswith("53"):
        return None
    return RESOURCE_ADVICE.get(
        sqlstate, "the server is short of resources (the message says which): fix that, then run again"
    )
