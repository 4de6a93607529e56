"""Settings: the TOML file given by `--config`, overridable key by key from the environment.

`HELPDESK_KPI_` + the key path in capitals joined by `__` overrides any key, e.g.
`HELPDESK_KPI_CONNECTORS__ZENDESK__API_TOKEN`. Secrets are `SecretStr` and are unwrapped
only where an HTTP session is built. `load_settings` reports every problem at once as
`ConfigProblem`s (file, key, reason) without echoing any value.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "HELPDESK_KPI_"
DEFAULT_CONFIG = "helpdesk-kpi.toml"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> timedelta:
    """`"30s"`, `"15m"`, `"2h"`, `"7d"`, `"1w"` (or a number of seconds) -> timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    raise ValueError('expected a duration such as "30s", "15m", "2h" or "7d"')


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class StoreSettings(Section):
    path: Path = Path("helpdesk-kpi.sqlite")


class ConnectorSettings(Section):
    enabled: bool = True
    base_url: str = ""
    start_date: date = date(2026, 1, 1)
    page_size: int | None = Field(default=None, ge=1, description="override the API's page size (tests, slow links)")
    timeout_seconds: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=6, ge=1, le=20)

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^/\s?#]+/?$", value):
            raise ValueError("must be scheme://host[:port] with no path, e.g. https://acme.zendesk.com")
        if value.startswith("http://") and not _is_loopback(value):
            raise ValueError("plain http is allowed only for a loopback address (the sandbox); use https")
        return value.rstrip("/")


def _is_loopback(url: str) -> bool:
    host = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


class ZendeskSettings(ConnectorSettings):
    subdomain: str = ""
    email: str = ""
    api_token: SecretStr | None = None
    oauth_token: SecretStr | None = None
    csat: Literal["auto", "legacy", "survey_responses", "none"] = "auto"
    include_ai_agent_tickets: bool = True

    @model_validator(mode="after")
    def _check_account(self) -> ZendeskSettings:
        if not self.enabled:
            return self
        if not (self.subdomain or self.base_url):
            raise ValueError("set subdomain (or base_url)")
        if not (_secret(self.api_token) or _secret(self.oauth_token)):
            raise ValueError("set api_token (with email) or oauth_token")
        if _secret(self.api_token) and not self.email:
            raise ValueError("api_token needs email (the admin's address)")
        return self


class IntercomSettings(ConnectorSettings):
    access_token: SecretStr | None = None
    region: Literal["us", "eu", "au"] = "us"
    api_version: str = "2.14"

    @model_validator(mode="after")
    def _check_account(self) -> IntercomSettings:
        if self.enabled and not _secret(self.access_token):
            raise ValueError("set access_token")
        return self


class FreshdeskSettings(ConnectorSettings):
    domain: str = ""
    api_key: SecretStr | None = None

    @model_validator(mode="after")
    def _check_account(self) -> FreshdeskSettings:
        if not self.enabled:
            return self
        if not (self.domain or self.base_url):
            raise ValueError("set domain (or base_url)")
        if not _secret(self.api_key):
            raise ValueError("set api_key")
        return self


def _secret(value: SecretStr | None) -> bool:
    return bool(value and value.get_secret_value())


class ConnectorsSettings(Section):
    zendesk: ZendeskSettings | None = None
    intercom: IntercomSettings | None = None
    freshdesk: FreshdeskSettings | None = None

    def enabled(self) -> dict[str, ConnectorSettings]:
        """The configured and enabled connectors, by name."""
        out: dict[str, ConnectorSettings] = {}
        for name in type(self).model_fields:
            section = getattr(self, name)
            if section is not None and section.enabled:
                out[name] = section
        return out


class KpiSettings(Section):
    abandon_after: timedelta = timedelta(minutes=30)
    fcr_window_days: int = Field(default=7, ge=1, le=90)
    targets: dict[str, Any] = Field(default_factory=dict)

    _parse_abandon = field_validator("abandon_after", mode="before")(classmethod(lambda cls, v: parse_duration(v)))


class ScheduleSettings(Section):
    sync_every: timedelta = timedelta(minutes=15)
    push_every: timedelta = timedelta(minutes=15)
    reconcile_at: str = "03:00"
    reconcile_lookback: timedelta = timedelta(days=7)

    _parse_durations = field_validator("sync_every", "push_every", "reconcile_lookback", mode="before")(
        classmethod(lambda cls, v: parse_duration(v))
    )

    @field_validator("reconcile_at")
    @classmethod
    def _check_time(cls, value: str) -> str:
        if not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", value):
            raise ValueError('expected a UTC time of day such as "03:00"')
        return value


class MetricsSettings(Section):
    enabled: bool = False
    port: int = Field(default=9464, ge=1, le=65535)


class LoggingSettings(Section):
    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error"] = "info"


class SurveyMapping(Section):
    """Where NPS or CES answers live in a helpdesk, with the scale they are on."""

    kind: Literal["nps", "ces", "csat"]
    scale: str
    helpdesk: str
    location: Literal["ticket_field", "person_field"]
    field: str

    @field_validator("scale")
    @classmethod
    def _known_scale(cls, value: str) -> str:
        from kpi_core.model import SCALES

        if value not in SCALES:
            raise ValueError(f"unknown scale; one of {', '.join(SCALES)}")
        return value


class SurveySettings(Section):
    mappings: list[SurveyMapping] = Field(default_factory=list)


class PrivacySettings(Section):
    # Key of the keyed hash that stands in for an e-mail address (cross-helpdesk identity,
    # survey imports, erasure by address). Give it through the environment.
    hash_key: SecretStr | None = None


class Settings(BaseSettings):
    """Everything the program reads from its configuration, validated."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    store: StoreSettings = Field(default_factory=StoreSettings)
    connectors: ConnectorsSettings = Field(default_factory=ConnectorsSettings)
    kpis: KpiSettings = Field(default_factory=KpiSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    surveys: SurveySettings = Field(default_factory=SurveySettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)  # first wins: the environment beats the file


class ConfigProblem(Exception):
    """The configuration cannot be used; `problems` lists (key, reason) pairs."""

    def __init__(self, path: Path, problems: list[tuple[str, str]]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("; ".join(f"{path}: {key}: {reason}" for key, reason in problems))


def config_path(explicit: str | Path | None, environ: dict[str, str] | None = None) -> Path:
    """`--config`, else `$HELPDESK_KPI_CONFIG`, else `./helpdesk-kpi.toml`."""
    env = os.environ if environ is None else environ
    return Path(explicit or env.get("HELPDESK_KPI_CONFIG") or DEFAULT_CONFIG)


def load_settings(path: str | Path) -> Settings:
    """Read and validate the file at `path` plus the environment; raise ConfigProblem."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigProblem(path, [("(file)", "not found; pass --config PATH or set HELPDESK_KPI_CONFIG")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigProblem(path, [("(file)", f"not valid TOML: {exc}")]) from None
    except OSError as exc:
        raise ConfigProblem(path, [("(file)", f"cannot be read: {exc.strerror}")]) from None
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigProblem(path, [(_key(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in exc.errors()]) from None
    if not settings.store.path.is_absolute():
        # A relative store path is relative to the config file, so cron and systemd agree.
        settings.store.path = (path.parent / settings.store.path).resolve()
    return settings


def _key(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if not str(p).startswith(("function-", "lambda"))]
    return ".".join(parts) or "(root)"


def secret_in_file_readable_by_others(path: Path) -> bool:
    """True when the config file holds a secret and others may read it."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    holds_secret = re.search(r"^\s*(api_token|oauth_token|access_token|api_key)\s*=\s*\"[^\"]+\"", text, re.M)
    return bool(holds_secret) and bool(mode & 0o044)
