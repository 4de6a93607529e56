"""Soak: the daemon for a long while against a sandbox whose tickets keep changing.

    python bench/soak.py [--duration 600] [--tickets 1200] [--sync-every 10s] [--changes 50]

Starts the sandbox (all three fake helpdesks) in this process and `helpdesk-kpi run` as a
subprocess on a fresh store, with the default KPI settings, so every change is synced and
computed. It keeps changing tickets (`--changes` a minute: mostly updates, some new
tickets, a deletion now and then). Every `--sample` seconds it reads the daemon's
RSS and peak RSS, open file descriptors and threads (/proc/PID) and each source's sync lag
(`status`). At the end it stops changing the sandbox, waits for one more successful sync
of every source, stops the daemon with SIGTERM and compares the store, table by table,
with a clean one-shot sync of the sandbox into a second store.

Goal: flat memory after warm-up, no descriptor growth, lag within a couple of intervals,
and the store equal to the sandbox. Exit code 0 only when the store is equal and the
daemon stopped with 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from connectors.sandbox import Sandbox
from kpi_core import status as health
from kpi_core.model import RECORD_TYPES
from kpi_core.settings import load_settings, parse_duration
from kpi_core.store import store_at
from kpi_core.sync import sync_all

CLI = [sys.executable, "-c", "import sys; from kpi_core.cli import main; sys.exit(main())"]


@dataclass
class Sample:
    at: float  # seconds since the daemon started
    rss_kb: int
    peak_rss_kb: int
    fds: int
    threads: int
    lag_s: dict[str, int | None]


@dataclass
class Report:
    duration_s: float
    sync_every: str
    tickets: int
    changes_made: int = 0
    samples: list[Sample] = field(default_factory=list)
    runs: dict[str, dict[str, int]] = field(default_factory=dict)
    stop_exit_code: int | None = None
    stop_seconds: float | None = None
    store_equals_sandbox: bool = False
    differences: list[str] = field(default_factory=list)


def proc_status(pid: int) -> tuple[int, int, int, int]:
    """RSS, peak RSS (kB), open descriptors and threads of a process."""
    fields: dict[str, str] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0]), fds, int(fields["Threads"])


def write_config(path: Path, sandbox: Sandbox, store: Path, sync_every: str) -> None:
    text = sandbox.config_toml(str(store))
    text += f'\n[schedule]\nsync_every = "{sync_every}"\npush_every = "{sync_every}"\n\n[logging]\nlevel = "info"\n'
    path.write_text(text)
    os.chmod(path, 0o600)


Key = tuple[str, str]


def read_table(store: Path, table: str) -> tuple[list[str], dict[Key, tuple[Any, ...]]]:
    conn = sqlite3.connect(store)
    try:
        cursor = conn.execute(f"SELECT * FROM [{table}]")
        names = [d[0] for d in cursor.description]
        src, sid = names.index("source"), names.index("source_id")
        return names, {(row[src], row[sid]): row for row in cursor}
    finally:
        conn.close()


def compare(actual: Path, expected: Path, sandbox: Sandbox) -> list[str]:
    """Differences between the daemon's store and a clean sync, by table and source, explained where we can.

    A deleted ticket is only compared on being deleted: the store keeps what it knew before
    the deletion (and its messages and events), a clean sync sees a tombstone at most.
    """
    deleted = {(name, str(t.id)) for name in sandbox.fakes for t in sandbox.world.tickets(name) if t.deleted}
    out = []
    for table in RECORD_TYPES:
        names, a = read_table(actual, table)
        _, e = read_table(expected, table)
        parent = names.index("contact_id") if "contact_id" in names else None

        def of_deleted(key: Key, row: tuple[Any, ...], table: str = table, parent: int | None = parent) -> bool:
            if table == "contacts":
                return key in deleted
            return parent is not None and (key[0], str(row[parent])) in deleted

        findings: dict[tuple[str, str], list[str]] = {}
        for key in sorted(set(a) | set(e)):
            row_a, row_e = a.get(key), e.get(key)
            row = row_a or row_e
            assert row is not None
            if of_deleted(key, row):
                if table == "contacts" and (row_a is None or row_a[names.index("status")] != "deleted"):
                    what = "deleted in the helpdesk, not marked deleted in the store"
                    findings.setdefault((key[0], what), []).append(key[1])
                continue
            if row_a is None:
                findings.setdefault((key[0], "missing"), []).append(key[1])
            elif row_e is None:
                findings.setdefault((key[0], "extra"), []).append(key[1])
            elif row_a != row_e:
                columns = ",".join(n for n, x, y in zip(names, row_a, row_e, strict=False) if x != y)
                findings.setdefault((key[0], f"different in {columns}"), []).append(key[1])
        for (source, what), ids in sorted(findings.items()):
            out.append(f"{table}/{source}: {len(ids)} {what} (e.g. {', '.join(ids[:3])})")
    return out


def run_counts(store: Path) -> dict[str, dict[str, int]]:
    conn = sqlite3.connect(store)
    try:
        rows = conn.execute("SELECT source, status, count(*) FROM sync_runs GROUP BY source, status").fetchall()
    finally:
        conn.close()
    out: dict[str, dict[str, int]] = {}
    for source, status, n in rows:
        out.setdefault(source, {})[status] = n
    return out


class Changer(threading.Thread):
    """Changes the sandbox like live helpdesks: updates, new tickets, a deletion now and then.

    The world stamps every change with its own second and never reuses one, so more than
    one change per second would run its clock ahead of real time, and the fakes hold
    back changes "from the future". `per_minute` stays below 60 for that reason.
    """

    def __init__(self, sandbox: Sandbox, per_minute: int, seed: int) -> None:
        super().__init__(name="changer", daemon=True)
        self.sandbox = sandbox
        self.interval = 60.0 / per_minute
        self.rng = random.Random(seed)
        self.halt = threading.Event()
        self.changes = 0

    def run(self) -> None:
        world, names = self.sandbox.world, list(self.sandbox.fakes)
        while not self.halt.wait(self.interval):
            name = names[self.changes % len(names)]
            roll = self.rng.random()
            if roll < 0.8:
                world.mutate(name, 1, self.rng)
            elif roll < 0.98:
                world.add_tickets(name, 1, self.rng)
            else:
                world.delete_ticket(name, self.rng.choice([t.id for t in world.tickets(name) if not t.deleted]))
            self.changes += 1


def caught_up(store: Path, sources: list[str], since: float) -> bool:
    """Every source finished a successful sync that started after `since`."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since + 1))
    conn = sqlite3.connect(store)
    try:
        return all(conn.execute("SELECT 1 FROM sync_runs WHERE source = ? AND status = 'ok' AND started_at > ?",
                                [s, stamp]).fetchone() for s in sources)
    finally:
        conn.close()


def soak(args: argparse.Namespace, workdir: Path) -> Report:
    report = Report(duration_s=args.duration, sync_every=args.sync_every, tickets=args.tickets)
    sandbox = Sandbox.generate(seed=args.seed, tickets=args.tickets)
    sandbox.start()
    store = workdir / "soak.sqlite"
    config = workdir / "soak.toml"
    write_config(config, sandbox, store, args.sync_every)
    settings = load_settings(config)
    log = (workdir / "daemon.log").open("w")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_KPI_")}
    daemon = subprocess.Popen([*CLI, "run", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=log, env=env)
    changer = Changer(sandbox, args.changes, args.seed)
    started = time.time()
    try:
        changer.start()
        while time.time() - started < args.duration:
            time.sleep(args.sample)
            if daemon.poll() is not None:
                raise SystemExit(f"the daemon exited early with {daemon.returncode}; see {workdir / 'daemon.log'}")
            rss, peak, fds, threads = proc_status(daemon.pid)
            with store_at(store) as st:
                sources = health.collect(st, settings)["sources"]
            sample = Sample(round(time.time() - started, 1), rss, peak, fds, threads,
                            {name: s["lag_seconds"] for name, s in sources.items()})
            report.samples.append(sample)
            print(f"{sample.at:7.0f}s  rss {rss / 1024:6.1f} MB  peak {peak / 1024:6.1f} MB  fds {fds:3d}"
                  f"  threads {threads:2d}  lag {sample.lag_s}", flush=True)
        changer.halt.set()
        changer.join()
        report.changes_made = changer.changes
        # The last change is stamped with the world's clock, which may be a little ahead of ours.
        quiet_since = max(time.time(), float(sandbox.world.tick()))
        while time.time() < quiet_since:
            time.sleep(0.2)
        deadline = time.time() + 10 * parse_duration(args.sync_every).total_seconds() + 120
        while not caught_up(store, list(sandbox.fakes), quiet_since) and time.time() < deadline:
            time.sleep(1)
        stop_at = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        report.stop_exit_code = daemon.wait(timeout=30)
        report.stop_seconds = round(time.monotonic() - stop_at, 2)
        report.runs = run_counts(store)
        reference = workdir / "reference.sqlite"
        write_config(workdir / "reference.toml", sandbox, reference, args.sync_every)
        ref_settings = load_settings(workdir / "reference.toml")
        with store_at(reference) as st:
            results = sync_all(st, ref_settings)
        if not all(r.ok for r in results):
            report.differences = [f"reference sync failed: {r.source}: {r.error}" for r in results if not r.ok]
        else:
            report.differences = compare(store, reference, sandbox)
        report.store_equals_sandbox = not report.differences
        return report
    finally:
        changer.halt.set()
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        log.close()
        sandbox.stop()


def summarize(report: Report) -> str:
    samples = report.samples
    warm = next((s for s in samples if s.at >= min(60.0, report.duration_s / 4)), samples[0])
    last = samples[-1]
    lags = [lag for s in samples if s.at >= warm.at for lag in s.lag_s.values() if lag is not None]
    lines = [
        f"soak: {report.duration_s:.0f}s, sync every {report.sync_every}, {report.tickets} tickets,"
        f" {report.changes_made} changes to the sandbox",
        f"peak RSS: {warm.peak_rss_kb / 1024:.1f} MB after warm-up ({warm.at:.0f}s),"
        f" {last.peak_rss_kb / 1024:.1f} MB at the end",
        f"RSS:      {warm.rss_kb / 1024:.1f} MB after warm-up, {last.rss_kb / 1024:.1f} MB at the end",
        f"open fds: {warm.fds} after warm-up, {last.fds} at the end (max {max(s.fds for s in samples)});"
        f" threads {warm.threads} -> {last.threads}",
        f"sync lag after warm-up: median {sorted(lags)[len(lags) // 2] if lags else '-'}s,"
        f" max {max(lags) if lags else '-'}s",
        f"sync runs: {json.dumps(report.runs, sort_keys=True)}",
        f"SIGTERM: exit {report.stop_exit_code} after {report.stop_seconds}s",
        f"store equals the sandbox: {'yes' if report.store_equals_sandbox else 'NO:'}",
        *(f"  {line}" for line in report.differences),
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds to run (default 600)")
    parser.add_argument("--tickets", type=int, default=1200, help="tickets across the three helpdesks")
    parser.add_argument("--sync-every", default="10s", help="[schedule] sync_every of the daemon")
    parser.add_argument("--changes", type=int, default=50,
                        help="changes per minute across the helpdesks"
                             " (below 60: the world's clock ticks once per change)")
    parser.add_argument("--sample", type=float, default=15.0, help="seconds between samples")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="also write the full report (every sample) to this file")
    parser.add_argument("--keep", help="work in this directory and keep it (default: a temporary one)")
    args = parser.parse_args()
    if args.keep:
        workdir = Path(args.keep)
        workdir.mkdir(parents=True, exist_ok=True)
        report = soak(args, workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="helpdesk-kpi-soak-") as tmp:
            report = soak(args, Path(tmp))
    print(summarize(report))
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(report), indent=1))
    return 0 if report.store_equals_sandbox and report.stop_exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
