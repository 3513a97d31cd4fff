"""How the tests wait: poll a condition until it holds, with a deadline, never a bare sleep."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any


def wait_until(
    condition: Callable[[], bool],
    timeout: float = 20.0,
    what: str = "condition",
    *,
    process: subprocess.Popen[Any] | None = None,
    interval: float = 0.05,
) -> float:
    """Poll `condition` every `interval`; the seconds it took. AssertionError naming `what`
    after `timeout`, or at once when `process` (the thing we wait for) has exited."""
    started = time.monotonic()
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode} while waiting for {what}")
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - started
