"""The throwaway PostgreSQL cluster of the tests (tests/pg_server.py): reachable, isolated, cleaned up, never run as
root, and with working advisory locks, which the daemons rely on to exclude each other."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pg_server import NOT_INSTALLED, PgServer, find_binaries, unavailable_reason
from waiting import wait_until

TESTS = Path(__file__).resolve().parent


def _process_gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie waiting for its reaper counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def _real_uid(pid: int) -> int:
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:"))
    return int(line.split()[1])


def test_the_server_answers_through_its_socket_only(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        database = conn.execute("SELECT current_database()").fetchone()
        assert database is not None and str(database[0]).startswith("test_the_server_answers_through_its_socket")
        # NULL server address: this session came through the Unix socket; and no TCP listener exists at all.
        assert conn.execute("SELECT inet_server_addr()").fetchone() == (None,)
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
        assert conn.execute("SHOW fsync").fetchone() == ("off",)


def test_two_databases_are_isolated(pg_server: PgServer, pg_url: str) -> None:
    with pg_server.database("other") as other_url:
        with psycopg.connect(pg_url) as conn:
            conn.execute("CREATE TABLE tickets (id integer PRIMARY KEY)")
            conn.execute("INSERT INTO tickets VALUES (1), (2)")
        with psycopg.connect(other_url) as other:
            assert other.execute("SELECT to_regclass('tickets')").fetchone() == (None,)
            other.execute("CREATE TABLE tickets (id integer PRIMARY KEY)")
            assert other.execute("SELECT count(*) FROM tickets").fetchone() == (0,)
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT count(*) FROM tickets").fetchone() == (2,)


def test_a_block_database_is_dropped_even_with_a_session_left_open(pg_server: PgServer) -> None:
    with pg_server.database("left open") as url:
        forgotten = psycopg.connect(url)  # a store under test that was never closed
        name = forgotten.info.dbname
        assert name in pg_server.database_names()
    assert name not in pg_server.database_names()
    with pytest.raises(psycopg.OperationalError):
        forgotten.execute("SELECT 1")
    forgotten.close()


@pytest.fixture
def dropped_after_the_test(pg_server: PgServer) -> Iterator[list[str]]:
    """Set up before `pg_url` and so torn down after it: checks the names the test recorded are gone by then."""
    names: list[str] = []
    yield names
    assert names, "the test recorded no database name"
    assert not set(names) & pg_server.database_names()


def test_pg_url_database_is_dropped_after_the_test(dropped_after_the_test: list[str], pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        dropped_after_the_test.append(conn.info.dbname)
        conn.execute("CREATE TABLE kept_open (id integer)")


def test_the_cluster_never_runs_as_root(pg_server: PgServer, pg_url: str) -> None:
    expected = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else os.getuid()
    with psycopg.connect(pg_url) as conn:  # the backend process lives as long as the session: look while it is open
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()
        data_directory = conn.execute("SELECT current_setting('data_directory')").fetchone()
        assert backend is not None and data_directory is not None
        assert _real_uid(int(backend[0])) == expected != 0
    assert Path(str(data_directory[0])).stat().st_uid == expected
    assert Path(str(data_directory[0])).parent == pg_server.folder


def test_an_advisory_lock_excludes_a_second_session(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as first, psycopg.connect(pg_url, autocommit=True) as second:
        assert first.execute("SELECT pg_try_advisory_lock(4242)").fetchone() == (True,)
        assert second.execute("SELECT pg_try_advisory_lock(4242)").fetchone() == (False,)
        # The blocking form waits for the holder; with a short lock_timeout the wait ends in an error instead.
        second.execute("SET lock_timeout = '100ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            second.execute("SELECT pg_advisory_lock(4242)")
        assert first.execute("SELECT pg_advisory_unlock(4242)").fetchone() == (True,)
        assert second.execute("SELECT pg_try_advisory_lock(4242)").fetchone() == (True,)
    # A session's locks end with it: a new session takes the lock the closed one held. The server ends the
    # closed session's backend a moment after the client has gone (longer on a busy machine), so it waits.
    with psycopg.connect(pg_url, autocommit=True) as third:
        third.execute("SET lock_timeout = '10s'")
        third.execute("SELECT pg_advisory_lock(4242)")  # LockNotAvailable if the closed session kept it
        assert third.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242"
                             " AND pid = pg_backend_pid()").fetchone() == (1,)


def test_a_killed_test_process_leaves_no_server_behind() -> None:
    if (reason := unavailable_reason()) is not None:
        pytest.skip(reason)
    owner = subprocess.Popen(
        [sys.executable, "-c", "import pg_server, time; server = pg_server.PgServer(); "
                               "print(server.folder, server.url(), flush=True); time.sleep(60)"],
        cwd=TESTS, env={**os.environ, "PYTHONPATH": str(TESTS)}, stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        folder, url = owner.stdout.readline().split()
        postmaster = int((Path(folder) / "data" / "postmaster.pid").read_text().split()[0])
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
    wait_until(lambda: _process_gone(postmaster), 10, "the orphaned postmaster to stop")
    wait_until(lambda: not Path(folder).exists(), 10, "the cluster's folder to be removed")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)


def _fake_installation(root: Path, version: str) -> Path:
    folder = root / version / "bin"
    folder.mkdir(parents=True)
    for name in ("initdb", "pg_ctl", "postgres"):
        (folder / name).write_text("#!/bin/sh\n")
        (folder / name).chmod(0o755)
    return folder


def test_the_newest_debian_version_is_chosen_and_its_absence_named(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr("pg_server.DEBIAN_BINARIES", tmp_path / "postgresql")
    assert find_binaries() is None
    assert unavailable_reason() == NOT_INSTALLED
    for version in ("9.6", "15", "13"):
        _fake_installation(tmp_path / "postgresql", version)
    found = find_binaries()
    assert found is not None and found.initdb == tmp_path / "postgresql" / "15" / "bin" / "initdb"
    # PATH comes first: the programs next to the initdb found there (through its symlink) win.
    on_path = _fake_installation(tmp_path / "elsewhere", "16")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "initdb").symlink_to(on_path / "initdb")
    found = find_binaries()
    assert found is not None and found.pg_ctl == on_path / "pg_ctl"
