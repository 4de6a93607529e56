"""The daemon writes the HTML report on a schedule (`[schedule] report_every`, `report_path`).

Driven as an operator runs it: `helpdesk-kpi run` (and `run --once`) in a subprocess against a
small sandbox, then `status` to see the job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from waiting import stop_daemon, wait_until

from connectors.sandbox import Sandbox

CLI = [sys.executable, "-c", "import sys; from kpi_core.cli import main; sys.exit(main())"]

pytestmark = pytest.mark.sandbox(seed=5, tickets=60, names=("zendesk",))


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_KPI_")}


def write_config(path: Path, box: Sandbox, *, schedule: str) -> Path:
    # A cheap daemon compute (this month, overall) so the report job is what the test watches.
    kpis = '[kpis]\nperiods = ["month"]\nsegments = [[]]\nhistory_months = 1\n'
    path.write_text(box.config_toml(str(path.parent / "store.sqlite")) + "\n[schedule]\nsync_every = \"1h\"\n"
                    + schedule + "\n" + kpis)
    os.chmod(path, 0o600)
    return path


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=clean_env(), timeout=timeout)


def status_json(config: Path) -> dict[str, Any]:
    result = cli("status", "--config", str(config), "--format", "json", timeout=60)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report



@pytest.fixture
def daemon_log(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_daemon_rewrites_the_report_on_schedule_atomically_and_status_lists_the_job(
        module_sandbox: Sandbox, tmp_path: Path, daemon_log: list[subprocess.Popen[str]]) -> None:
    (tmp_path / "reports").mkdir()
    config = write_config(tmp_path / "c.toml", module_sandbox,
                          schedule='report_every = "1s"\nreport_path = "reports/kpi.html"')
    target = tmp_path / "reports" / "kpi.html"  # relative to the store's folder
    log = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen([*CLI, "run", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=log,
                            text=True, env=clean_env())
    daemon_log.append(proc)

    def a_full_report() -> float | None:
        try:
            page = target.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        # Whatever moment it is read at, the file is a whole page: it is replaced by a rename.
        assert page.startswith("<!doctype html>") and page.endswith("</html>\n")
        return target.stat().st_mtime_ns if 'data-table="scorecard"' in page else None

    first = wait_until(a_full_report, 60, "a report of the synced store")
    wait_until(lambda: (a_full_report() or first) > first, 30, "the report written again on schedule")

    jobs = status_json(config)["daemon"]["jobs"]
    assert jobs["report"]["last_result"] == "ok", jobs["report"]
    assert jobs["report"]["running"] or jobs["report"]["next_run_at"], jobs["report"]
    table = cli("status", "--config", str(config), timeout=60)
    assert table.returncode == 0 and "\nreport " in table.stdout

    code, took = stop_daemon(proc, tmp_path / "daemon.log")
    assert code == 0 and took < 10
    log.close()
    output = (tmp_path / "daemon.log").read_text()
    assert "Traceback" not in output
    assert f"report: {target} written" in output
    assert [p.name for p in target.parent.iterdir()] == ["kpi.html"]  # no temp file left behind


def test_run_once_writes_the_report_when_due_and_not_again_until_the_interval_has_passed(
        module_sandbox: Sandbox, tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.html"
    target.parent.mkdir()
    config = write_config(tmp_path / "c.toml", module_sandbox,
                          schedule=f'report_every = "1h"\nreport_path = {json.dumps(str(target))}')
    first = cli("run", "--once", "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert "report: ok" in first.stdout.splitlines()  # each step that ran says so
    assert 'data-table="scorecard"' in target.read_text(encoding="utf-8")
    assert status_json(config)["daemon"]["jobs"]["report"]["last_result"] == "ok"
    written = target.stat().st_mtime_ns

    again = cli("run", "--once", "--config", str(config))
    assert again.returncode == 0, again.stderr
    assert target.stat().st_mtime_ns == written, "an hourly report is not due a second time"


def test_a_missing_report_folder_fails_the_job_with_one_clear_line(module_sandbox: Sandbox, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder" / "report.html"
    config = write_config(tmp_path / "c.toml", module_sandbox,
                          schedule=f'report_every = "15m"\nreport_path = {json.dumps(str(missing))}')
    result = cli("run", "--once", "--config", str(config))
    assert result.returncode == 1
    assert not missing.parent.exists(), "no folder is created for a mistyped path"
    expected = f"[schedule] report_path: the folder {missing.parent} does not exist"
    assert result.stderr.count(expected) == 1, result.stderr
    assert "report: FAILED" in result.stderr.splitlines()
    assert "Traceback" not in result.stderr and "Error:" not in result.stderr
    job = status_json(config)["daemon"]["jobs"]["report"]
    assert job["last_result"] == "failed" and job["last_error"] == expected


def test_no_report_job_unless_report_every_is_set(module_sandbox: Sandbox, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", module_sandbox, schedule="")
    result = cli("run", "--once", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "report" not in status_json(config)["daemon"]["jobs"]
    assert not (tmp_path / "helpdesk-kpi-report.html").exists()
