"""Polling for tests that watch another process (the daemon, a scheduled report, a sync to kill)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any


def wait_until(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """The first truthy value of `condition()`, polled every `every` seconds; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def kill_once(child: subprocess.Popen[Any], started: Callable[[], Any], timeout: float = 30) -> None:
    """SIGKILL `child` as soon as `started()` holds (a first page stored, say); fails the test if it ended first."""
    try:
        deadline = time.monotonic() + timeout
        while not started() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(10)
    assert child.returncode == -signal.SIGKILL, "the child ended before it was killed"
