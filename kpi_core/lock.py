"""One daemon per store: an exclusive `flock` on a lock file beside the store, holding the pid.

The kernel drops a `flock` when its process dies, however it dies, so a lock file left by a
crashed or killed daemon is simply taken over by the next one; the pid inside is only there
to name the holder. (`flock` is per host: keep the store on a local disk, not NFS.)
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)


class AlreadyRunning(Exception):
    """Another process holds the store's lock."""

    def __init__(self, lock_path: Path, pid: int | None, message: str | None = None) -> None:
        holder = f"pid {pid}" if pid else "another process (pid not yet written)"
        super().__init__(message or f"another helpdesk-kpi daemon ({holder}) is already running on this store"
                         f" (lock: {lock_path})")
        self.lock_path = lock_path
        self.pid = pid

    @classmethod
    def on_server(cls, where: str, server_pid: int | None) -> AlreadyRunning:
        """Another daemon holds a PostgreSQL account's lock (`server_pid`: its session's backend)."""
        session = f" (its database session: backend pid {server_pid})" if server_pid else ""
        return cls(Path(where), None, f"another helpdesk-kpi daemon is already running on {where}{session}")


def lock_path_for(store_path: Path) -> Path:
    return Path(str(store_path) + ".lock")


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


class StoreLock:
    """The exclusive lock of one store; `acquire` raises AlreadyRunning naming the holder."""

    def __init__(self, store_path: Path) -> None:
        self.path = lock_path_for(Path(store_path))
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        previous = _read_pid(self.path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(self.path, self._holder_pid()) from None
        if previous is not None and previous != os.getpid():
            log.warning("taking over the lock %s left by pid %d, which is no longer running", self.path, previous)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        os.fsync(fd)
        self._fd = fd

    def _holder_pid(self) -> int | None:
        # The holder writes its pid right after locking; give it a moment if we raced it.
        for _ in range(10):
            pid = _read_pid(self.path)
            if pid is not None:
                return pid
            time.sleep(0.05)
        return None

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # an empty file says "nobody": status then shows no daemon
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def running_daemon(store_path: Path) -> int | None:
    """The pid of the daemon running on this store, or None; reads only, never locks."""
    pid = _read_pid(lock_path_for(Path(store_path)))
    return pid if pid is not None and pid_alive(pid) else None
