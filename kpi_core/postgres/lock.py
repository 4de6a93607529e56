"""One daemon per account on a PostgreSQL store: a session advisory lock instead of the file lock.

PostgreSQL releases a session's advisory locks when its connection ends, however the daemon ends
(SIGKILL, a crash, a lost network), so the next daemon takes the account over; daemons of other
accounts take other keys and never wait for each other.
"""

from __future__ import annotations

import psycopg

from kpi_core.lock import AlreadyRunning
from kpi_core.postgres.database import safe_url

DAEMON_LOCK = 0x686B_6461  # "hkda": the daemons' key space (schema changes use schema.MIGRATION_LOCK)


class AccountLock:
    """The exclusive lock of one account's daemon; `acquire` raises AlreadyRunning naming the account."""

    def __init__(self, url: str, account_schema: str) -> None:
        self.url = url
        self.schema = account_schema
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def acquire(self) -> None:
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=15, application_name="helpdesk-kpi daemon")
        row = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", [DAEMON_LOCK, self.schema]).fetchone()
        if not row or not row[0]:
            holder = conn.execute(
                "SELECT a.pid, a.client_addr FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = hashtext(%s)::oid AND l.granted",
                [DAEMON_LOCK, self.schema]).fetchone()
            conn.close()
            where = f"{safe_url(self.url)} account {self.schema}"
            raise AlreadyRunning.on_server(where, holder[0] if holder else None)
        self._conn = conn

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()  # ending the session releases its advisory locks
            self._conn = None

    def __enter__(self) -> AccountLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
