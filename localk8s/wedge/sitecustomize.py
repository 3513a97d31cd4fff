"""Loaded into a probe container by the stuck-monitor test only (PYTHONPATH): while the file
`wedged` next to this one exists, every asyncpg query hangs and swallows the cancellation its
timeout sends, as a misbehaving driver call can. The probe's monitor is then stuck on purpose;
nothing else about the image changes."""

import asyncio
import contextlib
import functools
import os
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg.connection

FLAG = os.path.join(os.path.dirname(__file__), "wedged")


def _wedging(method: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Coroutine[Any, Any, Any]]:
    @functools.wraps(method)
    async def wedged(self: Any, *args: Any, **kwargs: Any) -> Any:
        while os.path.exists(FLAG):  # noqa: ASYNC240 (one stat per 0.1 s, in a test double)
            with contextlib.suppress(asyncio.CancelledError):  # the misbehaviour: timeouts are ignored
                await asyncio.sleep(0.1)
        return await method(self, *args, **kwargs)

    return wedged


for _name in ("execute", "fetch", "fetchval", "fetchrow"):
    setattr(asyncpg.connection.Connection, _name, _wedging(getattr(asyncpg.connection.Connection, _name)))
