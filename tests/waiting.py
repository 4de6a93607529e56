"""Polling for tests that watch another process (the daemon, a scheduled report, a sync to kill)."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
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


def stop_daemon(daemon: subprocess.Popen[Any], log: Path, sig: int = signal.SIGTERM,
                timeout: float = 15, thread: int | None = None) -> tuple[int, float]:
    """Send `sig` to a `helpdesk-kpi run` (to one of its threads, by Linux thread id, if `thread` is given) and wait
    for it: its exit code and the seconds it took.

    A daemon still running after `timeout` is asked for its threads' stacks (SIGUSR1), then killed;
    the test fails with the end of its log, stacks included, so a hang shows where it stood.
    """
    started = time.monotonic()
    if thread is None:
        daemon.send_signal(sig)
    elif ctypes.CDLL(None, use_errno=True).tgkill(daemon.pid, thread, sig) != 0:
        raise OSError(ctypes.get_errno(), f"tgkill {daemon.pid} {thread} {sig}")
    try:
        code = daemon.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        daemon.send_signal(signal.SIGUSR1)
        time.sleep(1)
        daemon.kill()
        daemon.wait()
        tail = log.read_text(encoding="utf-8", errors="replace")[-12000:]  # the stacks and what led to them
        raise AssertionError(f"the daemon did not stop within {timeout:.0f}s of {signal.Signals(sig).name};"
                             f" the end of its log:\n{tail}") from None
    return code, time.monotonic() - started
