"""The daemon as an operator runs it: a subprocess against the sandbox, with intervals of seconds.

The store a daemon leaves behind is compared with a reference store filled by one clean
sync of the same sandbox: after stops, kills, outages and revoked tokens the two must hold
exactly the same rows, so nothing was lost and nothing duplicated.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from waiting import stop_daemon, wait_until

from connectors.base import CallCounts, Page, StreamSpec
from connectors.sandbox import Sandbox
from kpi_core.daemon_state import DaemonState, JobState, read_state, state_path_for, write_state
from kpi_core.lock import AlreadyRunning, StoreLock, running_daemon
from kpi_core.metrics import METRIC_NAMES, Metrics
from kpi_core.model import RECORD_TYPES
from kpi_core.scheduler import Daemon, OnDemand, WriterGate, backoff_delay
from kpi_core.settings import load_settings
from kpi_core.store import store_at
from kpi_core.sync import rewind_source, sync_all

CLI = [sys.executable, "-c", "import sys; from kpi_core.cli import main; sys.exit(main())"]
SOURCES = ("zendesk", "intercom")  # two sources, so one can fail while the other keeps syncing


# --- helpers ----------------------------------------------------------------------------------


def write_config(path: Path, sandbox: Sandbox, store: Path, *, every: str = "1s", page_size: int = 20,
                 overrides: dict[str, dict[str, Any]] | None = None, log_format: str = "text", extra: str = "") -> Path:
    lines = ["[store]", f"path = {json.dumps(str(store))}", ""]
    for name, section in sandbox.connector_settings().items():
        section = {**section, "page_size": page_size, **(overrides or {}).get(name, {})}
        lines.append(f"[connectors.{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in section.items()]
        lines.append("")
    lines += ["[schedule]", f'sync_every = "{every}"', f'push_every = "{every}"', ""]
    lines += ["[logging]", 'level = "info"', f'format = "{log_format}"', ""]
    # The daemon computes after every change; keep that to this month's overall values here.
    lines += ["[kpis]", 'periods = ["month"]', "segments = [[]]", "history_months = 1", ""]
    path.write_text("\n".join(lines) + extra)
    os.chmod(path, 0o600)
    return path


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_KPI_")}


class DaemonProcess:
    """`helpdesk-kpi run` in a subprocess; its stderr goes to a file (a pipe could fill up and block it)."""

    def __init__(self, config: Path, log: Path, *args: str) -> None:
        self.log = log
        self._log_file = log.open("a")
        self.proc = subprocess.Popen([*CLI, "run", "--config", str(config), *args], stdout=subprocess.PIPE,
                                     stderr=self._log_file, text=True, env=clean_env())

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0, thread: int | None = None) -> tuple[int, float]:
        try:
            return stop_daemon(self.proc, self.log, sig, timeout, thread)
        finally:
            self._log_file.close()

    def output(self) -> str:
        return self.log.read_text()

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait()
        self._log_file.close()



def query(store: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if not store.exists():
        return []
    conn = sqlite3.connect(store, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:  # schema not created yet
        return []
    finally:
        conn.close()


def snapshot(store: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every record table's rows, sorted: what a store holds, independent of how it got there."""
    return {table: sorted(query(store, f"SELECT * FROM [{table}]"), key=repr) for table in RECORD_TYPES}


def reference_snapshot(sandbox: Sandbox, tmp_path: Path, name: str = "reference") -> dict[str, list[tuple[Any, ...]]]:
    """A clean one-shot sync of the sandbox as it is now, into a fresh store."""
    store_path = tmp_path / f"{name}.sqlite"
    config = write_config(tmp_path / f"{name}.toml", sandbox, store_path)
    settings = load_settings(config)
    with store_at(settings.store.path) as store:
        results = sync_all(store, settings)
    assert all(r.ok for r in results), [r.error for r in results]
    return snapshot(store_path)


def assert_same_rows(actual: dict[str, list[Any]], expected: dict[str, list[Any]]) -> None:
    for table in RECORD_TYPES:
        assert len(actual[table]) == len(expected[table]), \
            f"{table}: {len(actual[table])} rows, expected {len(expected[table])}"
        assert actual[table] == expected[table], f"{table}: rows differ from a clean sync"
    assert sum(len(rows) for rows in expected.values()) > 0


def runs(store: Path, source: str | None = None) -> list[tuple[Any, ...]]:
    sql = "SELECT id, source, status, pages, started_at, error FROM sync_runs"
    return query(store, sql + (" WHERE source = ?" if source else "") + " ORDER BY id", (source,) if source else ())


def ok_runs_started_after(store: Path, source: str, since: float) -> int:
    stamp = datetime.fromtimestamp(since, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return len(query(store, "SELECT id FROM sync_runs WHERE source = ? AND status = 'ok' AND started_at > ?",
                     (source, stamp)))


def caught_up(store: Path, since: float) -> bool:
    """Every source has finished a successful sync that started after `since` (whole seconds)."""
    return all(ok_runs_started_after(store, name, since + 1) for name in SOURCES)


def settled(sandbox: Sandbox) -> float:
    """Wait until the world's clock is behind ours, then return the time.

    The world stamps each change with a second of its own, never twice the same, so a burst
    of changes runs its clock ahead; the fakes show a change only once its second has come.
    """
    ahead_until = sandbox.world.tick()
    while time.time() < ahead_until + 1:
        time.sleep(0.1)
    return time.time()


def status_json(config: Path) -> tuple[int, dict[str, Any], str]:
    result = subprocess.run([*CLI, "status", "--config", str(config), "--format", "json"], capture_output=True,
                            text=True, env=clean_env(), timeout=60)
    return result.returncode, json.loads(result.stdout or "{}"), result.stderr


# The world of conftest's `sandbox`; slow: daemons run as subprocesses for seconds each.
pytestmark = [pytest.mark.sandbox(seed=11, tickets=240, names=SOURCES), pytest.mark.slow]


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.kill()


# --- the daemon end to end -----------------------------------------------------------------------


def test_runs_cycles_follows_changes_refuses_a_second_instance_and_stops_on_sigterm(
        sandbox: Sandbox, tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    store = tmp_path / "store.sqlite"
    config = write_config(tmp_path / "c.toml", sandbox, store)
    begun = time.time() - 2
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    daemons.append(daemon)
    wait_until(lambda: caught_up(store, begun), 20, "a first sync of every source")

    second = subprocess.run([*CLI, "run", "--config", str(config)], capture_output=True, text=True,
                            env=clean_env(), timeout=20)
    assert second.returncode == 1
    assert f"pid {daemon.pid}" in second.stderr and "already running" in second.stderr

    for name in SOURCES:
        sandbox.world.mutate(name, 3)
        sandbox.world.add_tickets(name, 1)
    changed_at = settled(sandbox)
    wait_until(lambda: caught_up(store, changed_at), 20, "a sync after the changes")
    assert_same_rows(snapshot(store), reference_snapshot(sandbox, tmp_path))
    assert len(runs(store, "zendesk")) >= 3, "several cycles ran"

    code, report, _ = status_json(config)
    assert code == 0
    assert report["daemon"]["running"] and report["daemon"]["pid"] == daemon.pid
    for name in SOURCES:
        assert report["sources"][name]["lag_seconds"] is not None and report["sources"][name]["lag_seconds"] < 30
        job = report["daemon"]["jobs"][f"sync:{name}"]
        assert job["running"] or job["next_run_at"], job
    assert "reconcile" in report["daemon"]["jobs"]
    lag_ok = subprocess.run([*CLI, "status", "--config", str(config), "--max-lag", "1h"], capture_output=True,
                            text=True, env=clean_env(), timeout=60)
    assert lag_ok.returncode == 0, lag_ok.stderr
    assert "daemon: running (pid" in lag_ok.stdout and "sync:zendesk" in lag_ok.stdout

    os.kill(daemon.pid, signal.SIGUSR1)  # where does it stand? it answers in its log and runs on
    stacks = wait_until(lambda: "SIGUSR1: the stacks of" in daemon.output() and daemon.output(), 10,
                        "the threads' stacks in the log")
    assert "thread MainThread:" in stacks and "in run_forever" in stacks and daemon.alive()

    code, took = daemon.stop(signal.SIGTERM)
    assert code == 0 and took < 10
    log = daemon.output()
    assert "Traceback" not in log
    assert "[zendesk/sync]" in log and "[intercom/sync]" in log  # source and job on the lines of a sync

    code, report, _ = status_json(config)  # works with no daemon running
    assert code == 0 and not report["daemon"]["running"]
    assert all(job["next_run_at"] is None for job in report["daemon"]["jobs"].values())


def test_sigterm_during_a_sync_commits_the_page_and_the_next_start_loses_nothing(
        sandbox: Sandbox, tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    store = tmp_path / "store.sqlite"
    config = write_config(tmp_path / "c.toml", sandbox, store, page_size=5)
    for name in SOURCES:
        sandbox[name].slow(0.05, times=10_000)  # a sync of several seconds, so the signal lands inside one
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    daemons.append(daemon)
    wait_until(lambda: any(r[2] == "running" and r[3] >= 2 for r in runs(store)), 20, "a sync two pages in")

    code, took = daemon.stop(signal.SIGTERM)
    assert code == 0 and took < 10, daemon.output()
    statuses = {r[2] for r in runs(store)}
    assert "stopped" in statuses and "running" not in statuses, runs(store)
    assert "Traceback" not in daemon.output()

    for name in SOURCES:
        sandbox[name].faults.clear()
    again = subprocess.run([*CLI, "run", "--once", "--config", str(config)], capture_output=True, text=True,
                           env=clean_env(), timeout=60)
    assert again.returncode == 0, again.stderr
    assert_same_rows(snapshot(store), reference_snapshot(sandbox, tmp_path))


def test_sigterm_exits_within_10s_even_while_a_request_hangs(
        sandbox: Sandbox, tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    store = tmp_path / "store.sqlite"
    overrides = {"zendesk": {"timeout_seconds": 60}}
    config = write_config(tmp_path / "c.toml", sandbox, store, overrides=overrides)
    sandbox["zendesk"].slow(40, times=1, skip=2)  # the third request hangs for longer than anyone waits
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    daemons.append(daemon)
    wait_until(lambda: len(sandbox["zendesk"].calls()) >= 2 and runs(store, "zendesk"), 20, "zendesk's sync under way")
    time.sleep(0.5)  # the hanging request is in flight
    code, took = daemon.stop(signal.SIGTERM)
    assert code == 0 and took < 10
    assert "still busy after 8s (sync:zendesk): exiting anyway" in daemon.output()
    sandbox["zendesk"].faults.clear()
    again = subprocess.run([*CLI, "run", "--once", "--config", str(config)], capture_output=True, text=True,
                           env=clean_env(), timeout=60)
    assert again.returncode == 0, again.stderr
    assert_same_rows(snapshot(store), reference_snapshot(sandbox, tmp_path))


def test_sigterm_caught_by_another_thread_than_the_main_one_stops_the_daemon_as_soon(
        sandbox: Sandbox, tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    # The kernel hands a process's signal to any of its threads; Python acts on it in the main thread only.
    store = tmp_path / "store.sqlite"
    config = write_config(tmp_path / "c.toml", sandbox, store)
    begun = time.time() - 2
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    daemons.append(daemon)
    wait_until(lambda: caught_up(store, begun), 20, "a first sync of every source")
    others = sorted(int(tid) for tid in os.listdir(f"/proc/{daemon.pid}/task") if int(tid) != daemon.pid)
    assert others, "the daemon runs its jobs on threads of their own"
    code, took = daemon.stop(signal.SIGTERM, thread=others[-1])
    assert code == 0 and took < 10
    assert "stopped cleanly" in daemon.output()


def test_sigkill_loses_nothing_and_the_stale_lock_is_taken_over(
        sandbox: Sandbox, tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    store = tmp_path / "store.sqlite"
    config = write_config(tmp_path / "c.toml", sandbox, store, page_size=5)
    for name in SOURCES:
        sandbox[name].slow(0.05, times=10_000)
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    daemons.append(daemon)
    wait_until(lambda: any(r[2] == "running" and r[3] >= 3 for r in runs(store)), 20, "a sync three pages in")
    code, _ = daemon.stop(signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert (Path(str(store) + ".lock")).read_text().strip() == str(daemon.pid), "the dead daemon's lock file is left"
    assert running_daemon(store) is None

    for name in SOURCES:
        sandbox[name].faults.clear()
        sandbox.world.mutate(name, 3)
    restarted = DaemonProcess(config, tmp_path / "restarted.log")
    daemons.append(restarted)
    changed_at = settled(sandbox)
    wait_until(lambda: caught_up(store, changed_at), 30, "the restarted daemon to catch up")
    code, _ = restarted.stop(signal.SIGTERM)
    assert code == 0
    log = restarted.output()
    assert f"taking over the lock {store}.lock left by pid {daemon.pid}" in log
    assert "interrupted by an earlier stop or crash" in log
    assert "running" not in {r[2] for r in runs(store)}
    assert_same_rows(snapshot(store), reference_snapshot(sandbox, tmp_path))


def test_a_source_with_a_revoked_token_backs_off_while_the_other_keeps_syncing(
        sandbox: Sandbox, tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    store = tmp_path / "store.sqlite"
    config = write_config(tmp_path / "c.toml", sandbox, store, log_format="json")
    zendesk = sandbox["zendesk"]
    zendesk.fail(401, times=1000)  # a revoked token, until the test lets it through again
    started = time.time()
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    daemons.append(daemon)

    wait_until(lambda: len([c for c in zendesk.calls() if c.status == 401]) >= 3, 20, "three rejected syncs")
    _code, report, _ = status_json(config)
    z = report["sources"]["zendesk"]
    assert z["last_success_at"] is None and z["failures_since_success"] >= 2
    assert "401" in z["last_error"]
    assert report["sources"]["intercom"]["last_success_at"] is not None
    late = subprocess.run([*CLI, "status", "--config", str(config), "--max-lag", "1h"], capture_output=True, text=True,
                          env=clean_env(), timeout=60)
    assert late.returncode == 1 and "zendesk" in late.stderr and "intercom" not in late.stderr
    assert "backing off" in late.stdout

    zendesk.faults.clear()  # a new token: the next try succeeds
    wait_until(lambda: ok_runs_started_after(store, "zendesk", started - 1), 30, "zendesk to recover")
    rejected = [c.at for c in zendesk.calls() if c.status == 401]
    gaps = [b - a for a, b in pairwise(rejected)]
    assert len(gaps) >= 2 and all(later > earlier * 1.5 for earlier, later in pairwise(gaps)), \
        f"the wait between tries grows: {gaps}"
    elapsed = time.time() - started
    # Meanwhile intercom kept its one-second pace.
    assert ok_runs_started_after(store, "intercom", started - 1) >= elapsed / 3, runs(store, "intercom")
    assert daemon.stop()[0] == 0
    lines = [json.loads(line) for line in daemon.output().splitlines()]  # JSON lines, every one
    backoff = [e for e in lines if "failed syncs in a row" in e["message"]]
    assert [e["message"] for e in backoff][:3] == ["zendesk: 1 failed syncs in a row; next try in 1s",
                                                  "zendesk: 2 failed syncs in a row; next try in 2s",
                                                  "zendesk: 3 failed syncs in a row; next try in 4s"]
    assert all(e["source"] == "zendesk" and e["job"] == "sync" and e["level"] == "warning" for e in backoff)
    assert {e["source"] for e in lines if "records in" in e["message"]} == {"zendesk", "intercom"}


def test_an_outage_and_timeouts_are_survived(sandbox: Sandbox, tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    store = tmp_path / "store.sqlite"
    overrides = {name: {"max_attempts": 2, "timeout_seconds": 1} for name in SOURCES}
    config = write_config(tmp_path / "c.toml", sandbox, store, overrides=overrides)
    zendesk = sandbox["zendesk"]
    zendesk.slow(2.5, times=1)  # the first request times out, the retry gets through
    begun = time.time() - 2
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    daemons.append(daemon)
    wait_until(lambda: caught_up(store, begun), 20, "a first sync despite the timeout")

    port = int(zendesk.base_url.rsplit(":", 1)[1])
    zendesk.stop()  # connection refused from now on
    down_at = time.time()
    wait_until(lambda: query(store, "SELECT count(*) FROM sync_runs WHERE source = 'zendesk' AND status = 'failed'"
                                    " AND started_at > ?", (_stamp(down_at),))[0][0] >= 2, 20, "failed syncs")
    assert daemon.alive()
    sandbox.world.mutate("zendesk", 4)
    zendesk.start("127.0.0.1", port)
    back_at = settled(sandbox)
    wait_until(lambda: ok_runs_started_after(store, "zendesk", back_at), 30, "zendesk to sync again")
    code, _ = daemon.stop()
    assert code == 0
    log = daemon.output()
    assert "zendesk: GET /api/v2/" in log and f"cannot reach 127.0.0.1:{port}" in log
    assert "Traceback" not in log
    assert_same_rows(snapshot(store), reference_snapshot(sandbox, tmp_path))


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_metrics_endpoint_answers_with_the_documented_names(
        sandbox: Sandbox, tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    pytest.importorskip("prometheus_client")
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = tmp_path / "store.sqlite"
    config = write_config(tmp_path / "c.toml", sandbox, store, extra=f"\n[metrics]\nenabled = true\nport = {port}\n")
    begun = time.time() - 2
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    daemons.append(daemon)
    wait_until(lambda: caught_up(store, begun), 20, "a first sync")

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    text = wait_until(lambda: _try(scrape), 10, "the metrics endpoint")
    for name in METRIC_NAMES:
        assert f"# HELP {name} " in text, f"{name} not exposed"
    assert 'helpdesk_kpi_api_calls_total{source="zendesk"}' in text
    records = [line for line in text.splitlines() if line.startswith('helpdesk_kpi_records{source="intercom"}')]
    assert records and float(records[0].split()[-1]) > 0
    assert daemon.stop()[0] == 0


def _try(fn: Callable[[], str]) -> str | None:
    try:
        return fn()
    except OSError:
        return None


def test_metrics_without_prometheus_client_is_a_configuration_error(sandbox: Sandbox, tmp_path: Path) -> None:
    store = tmp_path / "store.sqlite"
    config = write_config(tmp_path / "c.toml", sandbox, store, extra="\n[metrics]\nenabled = true\nport = 9464\n")
    hide = "import sys; sys.modules['prometheus_client'] = None; from kpi_core.cli import main; sys.exit(main())"
    result = subprocess.run([sys.executable, "-c", hide, "run", "--once", "--config", str(config)],
                            capture_output=True, text=True, env=clean_env(), timeout=60)
    assert result.returncode == 2
    assert f"{config}: metrics.enabled: needs the prometheus-client package" in result.stderr
    assert "Traceback" not in result.stderr
    assert not store.exists(), "nothing ran"


# --- the parts, in process -------------------------------------------------------------------------


def test_backoff_grows_from_the_interval_to_a_cap() -> None:
    every = timedelta(minutes=15)
    assert [backoff_delay(n, every) for n in (1, 2, 3)] == [every, 2 * every, 4 * every]
    assert backoff_delay(50, every) == timedelta(hours=1)
    assert backoff_delay(50, timedelta(hours=2)) == timedelta(hours=2), "never sooner than the interval"


def test_on_demand_folds_requests_made_while_queued_or_running() -> None:
    queued: list[datetime] = []
    job = OnDemand("push", timedelta(minutes=15), lambda _id, at: queued.append(at) or True)
    job.request()
    job.request()  # already queued: folds into the first
    assert len(queued) == 1
    job.begin()
    job.request()  # arrives while running: one more run, not before push_every
    job.request()
    assert len(queued) == 1
    job.finished()
    assert len(queued) == 2 and queued[1] - queued[0] >= timedelta(minutes=14)
    job.begin()
    job.finished()  # nothing asked meanwhile: idle
    assert len(queued) == 2
    job.request()
    assert len(queued) == 3


def test_writer_gate_lets_a_compute_in_alone_and_ahead_of_later_syncs() -> None:
    gate, stop, order = WriterGate(), threading.Event(), []

    def compute() -> None:
        with gate.alone(stop) as entered:
            order.append(f"compute {entered}")
            time.sleep(0.2)
            order.append("compute done")

    def later_sync() -> None:
        with gate.shared(stop) as entered:
            order.append(f"later sync {entered}")

    with gate.shared(stop):
        threads = [threading.Thread(target=compute), threading.Thread(target=later_sync)]
        threads[0].start()
        time.sleep(0.1)  # the compute now waits for this sync
        threads[1].start()
        time.sleep(0.1)
        order.append("first sync done")
    for t in threads:
        t.join(5)
    assert order == ["first sync done", "compute True", "compute done", "later sync True"]

    with gate.shared(stop):  # a stop while waiting: the compute gives up instead of hanging
        waiting = threading.Thread(target=compute)
        waiting.start()
        stop.set()
        waiting.join(5)
    assert order[4] == "compute False", order


def test_the_state_is_written_while_the_scheduler_reports_a_job_from_its_own_thread(
        sandbox: Sandbox, tmp_path: Path) -> None:
    # A job that ends before the scheduler attaches its callback is reported from the scheduler's
    # thread, inside the scheduler's lock; a state write elsewhere waits for that lock meanwhile.
    daemon = Daemon(load_settings(write_config(tmp_path / "c.toml", sandbox, tmp_path / "s.sqlite")))
    scheduler = BackgroundScheduler(timezone=timezone.utc)
    daemon._scheduler = scheduler
    daemon._update("report")
    other_writer = threading.Thread(target=daemon._write_state, daemon=True)

    def scheduler_thread() -> None:
        with scheduler._jobstores_lock:
            other_writer.start()
            time.sleep(0.2)  # the other writer now waits for the scheduler's lock
            daemon._write_state()  # what reporting the job does

    reporter = threading.Thread(target=scheduler_thread, daemon=True)  # a deadlock must not hang the suite
    reporter.start()
    reporter.join(5)
    other_writer.join(5)
    assert not reporter.is_alive() and not other_writer.is_alive(), "the two state writers deadlocked"
    assert read_state(state_path_for(tmp_path / "s.sqlite")) is not None


def test_lock_names_the_holder_and_is_released(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    with StoreLock(store):
        assert running_daemon(store) == os.getpid()
        with pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}"):
            StoreLock(store).acquire()
    assert running_daemon(store) is None
    with StoreLock(store):  # free again
        pass


def test_state_file_round_trips_and_a_torn_file_reads_as_none(tmp_path: Path) -> None:
    path = state_path_for(tmp_path / "s.sqlite")
    state = DaemonState(pid=1, started_at="2026-01-01T00:00:00Z", updated_at="2026-01-01T00:00:01Z",
                        jobs={"sync:zendesk": JobState("sync:zendesk", consecutive_failures=2, backoff_seconds=60.0)})
    write_state(path, state)
    assert read_state(path) == state
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    path.write_text('{"pid": 1, "jobs": {')
    assert read_state(path) is None


class _RewindableConnector:
    """A connector over a fixed list of (epoch, id) changes that can rewind to a time."""

    name = "zendesk"

    def __init__(self, changes: list[tuple[int, str]]) -> None:
        self.changes = changes
        self.stream = StreamSpec("tickets", ("contacts",))

    def streams(self) -> list[StreamSpec]:
        return [self.stream]

    def read(self, stream: StreamSpec, cursor: str | None, full: bool = False) -> Iterator[Page]:
        since = int(cursor or 0)
        for at, ticket_id in self.changes:
            if at >= since:
                page = Page(cursor=str(at + 1))
                page.add("contacts", {"source": "zendesk", "source_id": ticket_id, "status": "open",
                                      "channel": "email", "created_at": _stamp(at), "updated_at": _stamp(at)})
                yield page

    def rewind_cursor(self, stream: StreamSpec, cursor: str | None, since: datetime) -> str | None:
        return None if cursor is None else str(min(int(cursor), int(since.timestamp())))

    @property
    def api_calls(self) -> int:
        return 0

    @property
    def call_counts(self) -> CallCounts:
        return CallCounts()

    def close(self) -> None:
        pass


def test_rewind_moves_cursors_back_never_forward(tmp_path: Path) -> None:
    day = 86400
    now = int(time.time())
    connector = _RewindableConnector([(now - 10 * day, "1"), (now - 3 * day, "2"), (now - 60, "3")])
    with store_at(tmp_path / "s.sqlite") as store:
        store.set_cursor("zendesk", "tickets", str(now))
        moved = rewind_source(store, connector, datetime.fromtimestamp(now - 7 * day, tz=timezone.utc))
        assert moved == {"tickets": str(now - 7 * day)}
        store.set_cursor("zendesk", "tickets", str(now - 30 * day))  # a source that has been failing for a month
        assert rewind_source(store, connector, datetime.fromtimestamp(now - 7 * day, tz=timezone.utc)) == {}
        assert store.get_cursor("zendesk", "tickets") == str(now - 30 * day)


def test_reconcile_rereads_the_lookback_window(sandbox: Sandbox, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    from connectors.registry import plugin

    store_path = tmp_path / "s.sqlite"
    config = write_config(tmp_path / "c.toml", sandbox, store_path, page_size=100)
    daemon = Daemon(load_settings(config))
    assert daemon.run_once().ok
    recent = {name: max(sandbox.world.tickets(name), key=lambda t: t.updated_at) for name in SOURCES}
    with store_at(store_path) as store:  # as if the incremental exports had missed these changes
        for name, ticket in recent.items():
            store.db.execute("DELETE FROM contacts WHERE source = ? AND source_id = ?", [name, str(ticket.id)])
        store.db.conn.commit()
    rewinding = [name for name in SOURCES if hasattr(plugin(name).connector, "rewind_cursor")]
    assert rewinding, "at least one connector offers rewind_cursor"
    assert daemon.run_once().ok
    for name in rewinding:  # an ordinary incremental sync does not bring them back
        assert not query(store_path, "SELECT 1 FROM contacts WHERE source = ? AND source_id = ?",
                         (name, str(recent[name].id)))
    before = len(runs(store_path))
    caplog.set_level("INFO")
    daemon._reconcile_job()
    assert [r[2] for r in runs(store_path)][before:] == ["ok"] * len(SOURCES)
    for name in SOURCES:
        stored = {row[0] for row in query(store_path, "SELECT source_id FROM contacts WHERE source = ?", (name,))}
        if name in rewinding:
            assert str(recent[name].id) in stored, f"{name}: the look-back window was read again"
            assert f"{name}: re-reading changes since" in caplog.text
        else:  # the contract is `Reconcilable` in connectors/base.py; until a connector has it, a plain sync
            assert f"{name}: the connector cannot re-read a window" in caplog.text


class _RecordingMetrics(Metrics):
    """The no-op metrics, keeping what the daemon reports after each sync."""

    def __init__(self) -> None:
        self.throttled: dict[str, int] = {}
        self.api_calls: dict[str, int] = {}

    def sync_counts(self, source: str, *, api_calls: int, throttled: int, failed: bool) -> None:
        self.throttled[source] = self.throttled.get(source, 0) + throttled
        self.api_calls[source] = self.api_calls.get(source, 0) + api_calls


def test_429_answers_reach_the_throttle_metric_of_every_connector(tmp_path: Path) -> None:
    names = ("zendesk", "freshdesk")  # their clients sit under different attributes: the contract hides that
    box = Sandbox.generate(seed=11, tickets=60, names=names)
    box.start()
    try:
        for name in names:  # answered with 429 twice, then served: the sync succeeds after waiting
            box[name].fail(429, times=2, headers={"Retry-After": "0"})
        metrics = _RecordingMetrics()
        cycle = Daemon(load_settings(write_config(tmp_path / "c.toml", box, tmp_path / "s.sqlite")),
                       metrics=metrics).run_once()
    finally:
        box.stop()
    assert cycle.ok, cycle.errors
    assert {r.source: r.throttled for r in cycle.syncs} == {name: 2 for name in names}
    assert metrics.throttled == {name: 2 for name in names}
    assert all(metrics.api_calls[name] > 2 for name in names)


def test_the_daemon_applies_survey_mappings(sandbox: Sandbox, tmp_path: Path) -> None:
    with sandbox.world.lock:  # an NPS tool wrote its score into a conversation attribute
        answered = list(sandbox.world.tickets("intercom"))[:5]
        for ticket in answered:
            ticket.custom["nps_score"] = 9
    mapping = ('\n[[surveys.mappings]]\nkind = "nps"\nscale = "0-10"\nhelpdesk = "intercom"\n'
               'location = "ticket_field"\nfield = "nps_score"\n')
    store_path = tmp_path / "s.sqlite"
    config = write_config(tmp_path / "c.toml", sandbox, store_path, page_size=100, extra=mapping)
    assert Daemon(load_settings(config)).run_once().ok
    stored = query(store_path, "SELECT contact_id, kind, score FROM survey_responses WHERE source = 'intercom'"
                               " AND question = 'nps_score' ORDER BY contact_id")
    assert stored == sorted((str(t.id), "nps", 9.0) for t in answered)


def test_a_broken_store_is_refused_with_a_message(sandbox: Sandbox, tmp_path: Path) -> None:
    store_path = tmp_path / "s.sqlite"
    config = write_config(tmp_path / "c.toml", sandbox, store_path)
    with store_at(store_path) as store:
        store.db.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES"
                         " ('helpdesk_kpi', 'm999_from_the_future', '2030-01-01')")
        store.db.conn.commit()
    result = subprocess.run([*CLI, "run", "--once", "--config", str(config)], capture_output=True, text=True,
                            env=clean_env(), timeout=60)
    assert result.returncode == 1
    assert "newer helpdesk-kpi" in result.stderr and "Traceback" not in result.stderr
    assert running_daemon(store_path) is None, "the lock is released"
