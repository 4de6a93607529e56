"""`helpdesk-kpi demo`: the whole product on the sandbox, end to end, in one command.

Sandbox → sync every helpdesk that ships a fake → compute → push back (fields and private notes) →
scorecard → `demo-report.html`.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from connectors import registry
from connectors.sandbox import Sandbox, fake_names
from kpi_core.cli_common import reported_here
from kpi_core.kpis import api as kpis
from kpi_core.kpis.diagnostics import diagnose
from kpi_core.kpis.scorecard import format_diagnostics, format_scorecard
from kpi_core.report import write_report
from kpi_core.settings import Settings, load_settings
from kpi_core.store import Store, open_store
from kpi_core.sync import SourceResult, sync_all
from kpi_core.writeback import demo as writeback_demo

Say = Callable[[str], None]


def run(workdir: Path, *, tickets: int, seed: int, say: Say, warn: Say, report: Path = Path("demo-report.html"),
        port: int = 0) -> int:
    """Start the sandbox, sync every helpdesk, compute, push, show the KPIs. Returns an exit code."""
    workdir.mkdir(parents=True, exist_ok=True)
    say(f"Generating a sandbox of {tickets:,} tickets across {_titles(fake_names())}...")
    sandbox = Sandbox.generate(seed=seed, tickets=tickets)
    # Consecutive ports, so that `helpdesk-kpi sandbox --port N` serves this config again after the demo.
    first_port = port or _free_ports(len(sandbox.fakes))
    urls = sandbox.start("127.0.0.1", first_port)
    try:
        for name, url in urls.items():
            say(f"  fake {name} at {url}")
        settings = _write_config(sandbox, workdir)
        writeback_demo.prepare_fields(sandbox, settings)
        store = open_store(settings.store.location, settings.store.account)
        try:
            results = _sync(store, settings, say, warn)
            ok = _compute_push_report(store, settings, report, say, warn)
        finally:
            store.close()
        say(f"Config: {workdir / 'helpdesk-kpi.toml'}   Store: {settings.store.path}")
        for line in closing_hints(workdir / "helpdesk-kpi.toml", seed=seed, tickets=tickets, port=first_port):
            say(line)
        return 0 if ok and all(r.ok for r in results) else 1
    finally:
        sandbox.stop()


def closing_hints(config: Path, *, seed: int, tickets: int, port: int) -> list[str]:
    """What to try next, as commands that work when pasted into the same shell."""
    exe = executable()
    return [
        "",
        "Read the stored KPIs (no sandbox needed):",
        f"  {exe} kpis --by channel --config {config}",
        f"  {exe} report --out report.html --config {config}",
        "The sandbox stopped with the demo. To sync or push with this config again, start the same sandbox in"
        " another terminal (Ctrl-C stops it):",
        f"  {exe} sandbox --seed {seed} --tickets {tickets} --port {port}",
        f"  {exe} sync --config {config}",
    ]


def executable() -> str:
    """How to call helpdesk-kpi from here: the script beside this Python (.venv/bin), else the one on PATH."""
    beside = Path(sys.executable).parent / "helpdesk-kpi"
    if beside.is_file():
        try:
            return str(beside.relative_to(Path.cwd()))
        except ValueError:
            return str(beside)
    on_path = shutil.which("helpdesk-kpi")
    return "helpdesk-kpi" if on_path else f"{sys.executable} -m kpi_core.cli"


def _free_ports(count: int) -> int:
    """The first of `count` consecutive free loopback ports (0, any free ports, if none is found)."""
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = int(probe.getsockname()[1])
        if first + count <= 65535 and all(_free(first + i) for i in range(count)):
            return first
    return 0


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _titles(names: tuple[str, ...]) -> str:
    """How people name the helpdesks, as a list in prose: "A, B and C"."""
    titles = [registry.plugin(name).title for name in names]
    return " and ".join(filter(None, [", ".join(titles[:-1]), titles[-1]])) if titles else "no helpdesk"


def _write_config(sandbox: Sandbox, workdir: Path) -> Settings:
    config = workdir / "helpdesk-kpi.toml"
    store_path = (workdir / "helpdesk-kpi.sqlite").resolve()
    for suffix in ("", "-wal", "-shm"):
        Path(str(store_path) + suffix).unlink(missing_ok=True)  # each demo starts from an empty store
    # A hash key, so the shop's orders meet the helpdesks' customers by keyed e-mail hash (the value KPIs).
    config.write_text(sandbox.config_toml(str(store_path)) + "\n" + writeback_demo.sandbox_toml(sandbox)
                      + '\n[privacy]\nhash_key = "sandbox-demo-hash-key"\n')
    os.chmod(config, 0o600)
    return load_settings(config)


def _sync(store: Store, settings: Settings, say: Say, warn: Say) -> list[SourceResult]:
    say("Syncing...")
    with reported_here("kpi_core.sync"):  # its warnings and errors are printed below, once
        results = sync_all(store, settings)
    for r in results:
        if r.ok:
            stored = r.stored_text()
            say(f"  {r.source}: read {r.records:,} items with {r.api_calls:,} API calls{stored}")
        else:
            warn(f"  {r.source}: FAILED: {r.error}")
        for warning in r.warnings:
            warn(f"  {r.source}: warning: {warning}")
    return results


def _compute_push_report(store: Store, settings: Settings, report: Path, say: Say, warn: Say) -> bool:
    started = time.monotonic()
    summary = kpis.compute(store, settings)
    say(f"Computed {summary.values_written:,} KPI values in {time.monotonic() - started:.1f}s")
    say("Pushing KPIs back into the helpdesks...")
    pushed = writeback_demo.run(store, settings, say, warn)
    rows = kpis.kpi_rows(store, settings, "month", None, None)
    previous = kpis.previous_rows(store, settings, "month", None, None)
    say("")
    channels = kpis.kpi_rows(store, settings, "month", None, None, ["channel"], ["first_response_time_median"])
    say(format_scorecard(rows, previous, channels))
    found = diagnose(store, settings, None, None)
    overall = [d for d in found if not d["segment"]]
    if overall:
        say("")
        say(format_diagnostics(overall))
    if len(found) > len(overall):
        say(f"  ({len(found) - len(overall)} more by channel, language and source: helpdesk-kpi diagnose)")
    written = write_report(store, settings, report)
    say("")
    say(f"Report: {written.path.resolve()} ({written.bytes:,} bytes)")
    return pushed
