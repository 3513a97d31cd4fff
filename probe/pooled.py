"""Decide whether the probe talks through a pooler: the setting, the host name, or what it observes."""

from __future__ import annotations

from pgconn.dsn import DatabaseUrl
from pgconn.pooler import PoolerSetting, PoolerVerdict, decide_pooled


class PoolerObserver:
    """Keeps the pooled verdict, updated by what each round sees on its connection.

    Two observations mean a pooler: the backend pid differs from the one announced in the
    connection's startup (BackendKeyData; PgBouncer sends its own), or it changes between
    two transactions on one client connection (transaction pooling). Once seen, it sticks.
    """

    def __init__(self, url: DatabaseUrl, setting: PoolerSetting) -> None:
        self._initial = decide_pooled(url, setting)
        self._observed: bool | None = None
        self._last_pid: dict[int, int] = {}

    @property
    def verdict(self) -> PoolerVerdict:
        if self._initial.source in ("setting", "host") or self._observed is None:
            return self._initial
        return PoolerVerdict(pooled=self._observed, source="observed")

    def observe(self, announced_pid: int, backend_pid: int) -> PoolerVerdict:
        """Record one transaction's `pg_backend_pid()` on the connection that announced `announced_pid`."""
        previous = self._last_pid.get(announced_pid)
        self._last_pid = {announced_pid: backend_pid}
        seen = backend_pid != announced_pid or (previous is not None and previous != backend_pid)
        self._observed = bool(self._observed) or seen
        return self.verdict
