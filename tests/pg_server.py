"""A throwaway PostgreSQL cluster for the tests: `initdb` into a fresh temporary folder, started with `pg_ctl`,
reachable only through a Unix socket in that folder, and removed afterwards.

The `pg_server` and `pg_url` fixtures (conftest.py) start one per test process; docs/postgresql.md says why it is
built this way (initdb refuses to run as root; a socket in a private folder cannot collide with anything).
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

NOT_INSTALLED = "PostgreSQL is not installed: .ci/run installs Debian's postgresql package"
# Where Debian (and Ubuntu) put each installed major version's programs, next to nothing on PATH.
DEBIAN_BINARIES = Path("/usr/lib/postgresql")
# The user the cluster runs as when the tests run as root: it exists everywhere and owns nothing.
UNPRIVILEGED_USER = "nobody"
# Settings for speed and isolation; durability is worthless for a cluster that is deleted after the run.
FAST_SETTINGS = {
    "listen_addresses": "''",  # no TCP at all: parallel workers and CI machines never share a port
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "'16MB'",
    "max_connections": "50",
    "log_min_messages": "warning",
}
STOP_TIMEOUT_SECONDS = 30
# A Unix socket's path holds at most 107 bytes on Linux; the socket is <folder>/.s.PGSQL.<port>.
SOCKET_PATH_LIMIT = 107


@dataclass(frozen=True)
class Binaries:
    """The programs of one PostgreSQL installation (all from the same folder, so one major version)."""

    initdb: Path
    pg_ctl: Path


@dataclass(frozen=True)
class RunAs:
    """Whom initdb, pg_ctl and postgres run as: `uid`/`gid` None means this process's own user."""

    uid: int | None
    gid: int | None

    def chown(self, path: Path) -> None:
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)


def _version_key(folder: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", folder.name)) or (0,)


def find_binaries() -> Binaries | None:
    """initdb and pg_ctl from PATH (resolved through symlinks, so postgres is found next to them), else from
    the newest /usr/lib/postgresql/<version>/bin; None when PostgreSQL is not installed."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    if DEBIAN_BINARIES.is_dir():
        versions = sorted((entry for entry in DEBIAN_BINARIES.iterdir() if (entry / "bin").is_dir()),
                          key=_version_key, reverse=True)
        candidates.extend(entry / "bin" for entry in versions)
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return Binaries(initdb=folder / "initdb", pg_ctl=folder / "pg_ctl")
    return None


def _run_as() -> RunAs | str:
    """This process's own user, or `nobody` when running as root (initdb and postgres refuse root);
    a sentence when root has no unprivileged user to hand the cluster to."""
    if os.geteuid() != 0:
        return RunAs(uid=None, gid=None)
    try:
        user = pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError:
        return (f"PostgreSQL refuses to run as root and this machine has no `{UNPRIVILEGED_USER}` user "
                "to run the test cluster as")
    return RunAs(uid=user.pw_uid, gid=user.pw_gid)


def _unreachable_ancestor(folder: Path) -> Path | None:
    """The first folder on the way to `folder` that other users cannot pass through (no o+x), if any."""
    for ancestor in [*reversed(folder.resolve().parents), folder.resolve()]:
        if not os.stat(ancestor).st_mode & stat.S_IXOTH:
            return ancestor
    return None


def unavailable_reason() -> str | None:
    """None when a cluster can be started here, else one sentence saying why not (the tests skip with it)."""
    if find_binaries() is None:
        return NOT_INSTALLED
    run_as = _run_as()
    if isinstance(run_as, str):
        return run_as
    if run_as.uid is not None:
        blocked = _unreachable_ancestor(Path(tempfile.gettempdir()))
        if blocked is not None:
            return (f"the temporary folder {blocked} is closed to user `{UNPRIVILEGED_USER}`, who runs the test "
                    "cluster: point TMPDIR at a folder every user can pass through, such as /tmp")
    return None


def _free_port() -> int:
    """A port number no loopback listener holds now. The cluster does not listen on it (no TCP); it only names the
    socket file and seeds PostgreSQL's shared-memory key, so picking an unused one avoids needless key probing."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _clean_environment() -> dict[str, str]:
    # A developer's PGDATA/PGPORT/PGHOST must not steer the throwaway cluster (or the test connections).
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


class PgServerError(RuntimeError):
    """The cluster could not be created, started or stopped; the message carries the server's own words."""


class PgServer:
    """A PostgreSQL cluster in a temporary folder, on a Unix socket only, stopped and deleted by `close()`.

    A watchdog shell holds the read end of a pipe whose write end only this process has: when this process ends in
    any way (even SIGKILL), the pipe closes and the watchdog stops the cluster and deletes its folder. `close()`
    uses the same path, so a normal stop and a crash clean up alike.
    """

    def __init__(self, binaries: Binaries | None = None) -> None:
        found = binaries or find_binaries()
        if found is None:
            raise PgServerError(NOT_INSTALLED)
        run_as = _run_as()
        if isinstance(run_as, str):
            raise PgServerError(run_as)
        self.binaries = found
        self.run_as = run_as
        self.port = _free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="kpi-pg-"))
        if len(os.fsencode(self.folder / f".s.PGSQL.{self.port}")) > SOCKET_PATH_LIMIT:
            self.folder.rmdir()
            raise PgServerError(f"the temporary folder {self.folder.parent} has too long a path for PostgreSQL's "
                                "socket: point TMPDIR at a shorter one, such as /tmp")
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._names = count(1)
        self.startup_seconds = 0.0
        run_as.chown(self.folder)
        try:
            started = time.monotonic()
            self._watch()  # first: from here on, however this process ends, the folder and server go with it
            self._initdb()
            self._start()
            self.startup_seconds = time.monotonic() - started
        except BaseException:
            self.close()
            raise
        atexit.register(self.close)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def _command(self, args: list[str], *, what: str) -> None:
        result = subprocess.run(args, cwd=self.folder, env=_clean_environment(), user=self.run_as.uid,
                                group=self.run_as.gid, extra_groups=[] if self.run_as.uid is not None else None,
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            said = (result.stderr or result.stdout).strip()
            if self.log.exists():
                said += "\n" + "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
            raise PgServerError(f"{what} failed in {self.folder}: {said}")

    def _initdb(self) -> None:
        self._command([str(self.binaries.initdb), "-D", str(self.data), "--auth=trust", "-U", "postgres",
                       "--encoding=UTF8", "--locale=C"], what="initdb")
        settings = {**FAST_SETTINGS, "port": str(self.port), "unix_socket_directories": f"'{self.folder}'"}
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# tests/pg_server.py: a throwaway cluster on a private Unix socket\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _start(self) -> None:
        self._command([str(self.binaries.pg_ctl), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30",
                       "start"], what="pg_ctl start")

    def _watch(self) -> None:
        stop = shlex.join([str(self.binaries.pg_ctl), "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        # `read` returns when the pipe closes: on close() or when this process dies, however it dies. The stop
        # fails harmlessly when nothing was started.
        script = f"read -r _; {stop} >/dev/null 2>&1; rm -rf {shlex.quote(str(self.folder))}"
        self._watchdog = subprocess.Popen(
            ["/bin/sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd="/", env=_clean_environment(), user=self.run_as.uid,
            group=self.run_as.gid, extra_groups=[] if self.run_as.uid is not None else None,
            start_new_session=True)  # a Ctrl-C to pytest's process group must not kill it before it has run

    def close(self) -> None:
        """Stop the cluster (immediate: nothing in it is worth a checkpoint) and delete its folder; idempotent."""
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None and watchdog.stdin is not None:
            watchdog.stdin.close()
            try:
                watchdog.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                watchdog.kill()
                watchdog.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
        atexit.unregister(self.close)

    def __enter__(self) -> PgServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    # -- databases ---------------------------------------------------------------------------------------------

    def url(self, dbname: str = "postgres") -> str:
        """A libpq URL reaching `dbname` as the `postgres` superuser through the cluster's socket."""
        return f"postgresql://postgres@/{quote(dbname, safe='')}?host={quote(str(self.folder), safe='/')}" \
               f"&port={self.port}"

    def _admin(self) -> psycopg.Connection[TupleRow]:
        # CREATE/DROP DATABASE cannot run inside a transaction block.
        return psycopg.connect(self.url("postgres"), autocommit=True)

    def create_database(self, name: str) -> str:
        """Create an empty database `name` (from template0: nothing a test left in template1) and return its URL."""
        with self._admin() as admin:
            create = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
            if admin.info.server_version >= 150000:
                # Copying template0's files takes ~12 ms here, writing them through the WAL (15's default) ~50 ms;
                # the checkpoint FILE_COPY needs is cheap with fsync off.
                create += sql.SQL(" STRATEGY FILE_COPY")
            admin.execute(create)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop `name` if it exists, ending the sessions a test left open in it."""
        with self._admin() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def database_names(self) -> set[str]:
        with self._admin() as admin:
            return {str(row[0]) for row in admin.execute("SELECT datname FROM pg_database")}

    @contextmanager
    def database(self, hint: str = "test") -> Iterator[str]:
        """A fresh database (named after `hint`, unique in this cluster) for the block; its URL, dropped after."""
        cleaned = re.sub(r"[^a-z0-9_]+", "_", hint.lower()).strip("_") or "test"
        name = f"{cleaned[:50]}_{next(self._names)}"
        url = self.create_database(name)
        try:
            yield url
        finally:
            self.drop_database(name)

    unavailable_reason = staticmethod(unavailable_reason)
