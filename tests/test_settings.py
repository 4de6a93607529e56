"""Settings: TOML + environment, every problem reported with its key, secrets never echoed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from kpi_core.settings import (
    ConfigProblem,
    config_path,
    load_settings,
    parse_duration,
    secret_in_file_readable_by_others,
)

ROOT = Path(__file__).resolve().parent.parent
SECRET_ENV = {
    "HELPDESK_KPI_CONNECTORS__ZENDESK__API_TOKEN": "zd-secret-123",
    "HELPDESK_KPI_CONNECTORS__INTERCOM__ACCESS_TOKEN": "ic-secret-456",
    "HELPDESK_KPI_CONNECTORS__FRESHDESK__API_KEY": "fd-secret-789",
}


@pytest.fixture
def secrets_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in SECRET_ENV.items():
        monkeypatch.setenv(key, value)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "helpdesk-kpi.toml"
    path.write_text(text)
    return path


def test_example_config_loads_with_secrets_from_the_environment(secrets_in_env: None) -> None:
    settings = load_settings(ROOT / "config.example.toml")
    assert set(settings.enabled_connectors()) == {"zendesk", "intercom", "freshdesk"}
    assert settings.connectors["zendesk"] is not None
    assert settings.connectors["zendesk"].api_token is not None
    assert settings.connectors["zendesk"].api_token.get_secret_value() == "zd-secret-123"
    assert "zd-secret-123" not in repr(settings)
    assert settings.kpis.abandon_after == timedelta(minutes=30)
    assert settings.schedule.sync_every == timedelta(minutes=15)


def test_environment_overrides_a_key_of_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[connectors.freshdesk]\ndomain = "acme"\napi_key = "from-file"\n'
                           '[kpis]\nfcr_window_days = 5\n')
    monkeypatch.setenv("HELPDESK_KPI_CONNECTORS__FRESHDESK__API_KEY", "from-env")
    monkeypatch.setenv("HELPDESK_KPI_KPIS__FCR_WINDOW_DAYS", "9")
    settings = load_settings(path)
    assert settings.connectors["freshdesk"] is not None
    assert settings.connectors["freshdesk"].api_key is not None
    assert settings.connectors["freshdesk"].api_key.get_secret_value() == "from-env"
    assert settings.connectors["freshdesk"].domain == "acme"
    assert settings.kpis.fcr_window_days == 9


def test_every_problem_is_reported_with_its_key_and_no_value(tmp_path: Path) -> None:
    path = write(tmp_path, """
[connectors.zendesk]
subdomain = "acme"
api_token = "tok-should-not-echo"
typo_key = 1
[connectors.freshdesk]
domain = "x"
base_url = "http://example.com"
api_key = "k"
[schedule]
sync_every = "soon"
""")
    with pytest.raises(ConfigProblem) as caught:
        load_settings(path)
    keys = [key for key, _ in caught.value.problems]
    assert keys == ["connectors.zendesk.typo_key", "connectors.freshdesk.base_url", "schedule.sync_every"]
    assert "tok-should-not-echo" not in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_credentials_name_the_section(tmp_path: Path) -> None:
    path = write(tmp_path, '[connectors.zendesk]\nsubdomain = "acme"\n')
    with pytest.raises(ConfigProblem) as caught:
        load_settings(path)
    assert caught.value.problems[0][0] == "connectors.zendesk"
    assert "api_token" in caught.value.problems[0][1]


def test_a_disabled_connector_needs_no_credentials(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "[connectors.zendesk]\nenabled = false\n"))
    assert settings.enabled_connectors() == {}


def test_broken_toml_and_missing_file_are_problems_of_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigProblem) as caught:
        load_settings(write(tmp_path, "[store\npath = 1"))
    assert caught.value.problems[0][0] == "(file)"
    with pytest.raises(ConfigProblem):
        load_settings(tmp_path / "absent.toml")


def test_relative_store_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, '[store]\npath = "data/kpi.sqlite"\n'))
    assert settings.store.path == (tmp_path / "data" / "kpi.sqlite").resolve()


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("15m", 900), ("2h", 7200), ("7d", 604800), (45, 45)])
def test_durations(text: object, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_config_path_precedence(tmp_path: Path) -> None:
    assert config_path("x.toml", {"HELPDESK_KPI_CONFIG": "y.toml"}) == Path("x.toml")
    assert config_path(None, {"HELPDESK_KPI_CONFIG": "y.toml"}) == Path("y.toml")
    assert config_path(None, {}) == Path("helpdesk-kpi.toml")


def test_world_readable_config_with_a_secret_is_flagged(tmp_path: Path) -> None:
    path = write(tmp_path, '[connectors.intercom]\naccess_token = "abc"\n')
    path.chmod(0o644)
    assert secret_in_file_readable_by_others(path)
    path.chmod(0o600)
    assert not secret_in_file_readable_by_others(path)
