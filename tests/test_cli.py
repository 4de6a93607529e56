"""The command line as an admin uses it: exit codes, one-line errors, no secret in any output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kpi_core.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_KPI_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "kpi_core.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=ROOT, timeout=120)


def test_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[connectors.freshdesk]\ndomain = "acme"\n')
    os.chmod(config, 0o600)
    os.environ["HELPDESK_KPI_CONNECTORS__FRESHDESK__API_KEY"] = "fd-key-very-secret"
    try:
        assert main(["check-config", "--config", str(config)]) == 0
    finally:
        del os.environ["HELPDESK_KPI_CONNECTORS__FRESHDESK__API_KEY"]
    captured = capsys.readouterr()
    assert "OK" in captured.out and "freshdesk" in captured.out
    assert "fd-key-very-secret" not in captured.out + captured.err


def test_bad_config_exits_2_naming_file_and_key_without_traceback(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[connectors.zendesk]\nsubdomain = "acme"\napi_token = "zd-token-never-printed"\n'
                      'emial = "typo"\n')
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode == 2
    assert f"{config}: connectors.zendesk.emial: Extra inputs are not permitted" in result.stderr
    assert "Traceback" not in result.stderr
    assert "zd-token-never-printed" not in result.stdout + result.stderr


def test_world_readable_config_with_secret_is_warned(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[connectors.intercom]\naccess_token = "ic-token-never-printed"\n')
    config.chmod(0o644)
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode == 0
    assert "readable by other users" in result.stderr
    assert "ic-token-never-printed" not in result.stdout + result.stderr


def test_config_from_environment_variable(tmp_path: Path) -> None:
    config = tmp_path / "env.toml"
    config.write_text("[kpis]\nfcr_window_days = 0\n")
    result = run_cli("check-config", env={"HELPDESK_KPI_CONFIG": str(config)})
    assert result.returncode == 2
    assert "kpis.fcr_window_days" in result.stderr


def test_sync_with_nothing_enabled_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "s.sqlite"}"\n')
    result = run_cli("sync", "--config", str(config))
    assert result.returncode == 2
    assert "no source is enabled" in result.stderr


def test_unreachable_source_fails_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "s.sqlite"}"\n'
        '[connectors.freshdesk]\nbase_url = "http://127.0.0.1:9"\napi_key = "fd-key-never-printed"\nmax_attempts = 1\n'
    )
    result = run_cli("sync", "--config", str(config))
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if "FAILED" in line]
    assert len(lines) == 1 and "freshdesk" in lines[0] and "cannot reach" in lines[0]
    assert "Traceback" not in result.stderr
    assert "fd-key-never-printed" not in result.stdout + result.stderr


def test_status_on_a_fresh_store(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "s.sqlite"}"\n[connectors.freshdesk]\ndomain = "acme"\napi_key = "k-secret"\n'
    )
    result = run_cli("status", "--config", str(config), "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["sources"]["freshdesk"]["last_success_at"] is None
    assert "k-secret" not in result.stdout
    lag = run_cli("status", "--config", str(config), "--max-lag", "1h")
    assert lag.returncode == 1
    assert "freshdesk" in lag.stderr


def test_bad_date_is_a_usage_error() -> None:
    from kpi_core.cli_common import UsageError, parse_date

    with pytest.raises(UsageError, match="--since"):
        parse_date("2026-13-01", "--since")
