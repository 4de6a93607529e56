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
import zoneinfo
from datetime import date, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args
from urllib.parse import quote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_core import ValidationError as CoreValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from connectors import registry
from connectors.settings import ConnectorSettings
from kpi_core.kpis import catalogue
from kpi_core.kpis.targets import check_targets
from kpi_core.model import SCALES
from kpi_core.writeback.mappings import check_mapping, check_template

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


_ACCOUNT = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class StoreSettings(Section):
    """Where the store lives: a SQLite file (`path`, the default) or a PostgreSQL database (`url`).

    With `url`, `account` names the brand or client this daemon writes: each account's tables live in a
    schema of that name, so many daemons share one database (docs/postgresql.md). The password comes
    from `password` (better: HELPDESK_KPI_STORE__PASSWORD in the environment) or libpq's own PGPASSWORD
    and ~/.pgpass; it never appears in messages, logs or `status`.
    """

    path: Path = Path("helpdesk-kpi.sqlite")  # also where the daemon keeps its state file beside the store
    url: str | None = None  # postgresql://user@host:5432/database
    password: SecretStr | None = None
    account: str = "main"

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("expected a PostgreSQL URL such as postgresql://user@host:5432/database")
        if value is not None and urlsplit(value).password:
            raise ValueError("the URL holds a password: give it in HELPDESK_KPI_STORE__PASSWORD (or [store]"
                             " password) instead, so the URL can be shown")
        return value

    @field_validator("account")
    @classmethod
    def _check_account(cls, value: str) -> str:
        if not _ACCOUNT.match(value):
            raise ValueError("expected a short name of lower-case letters, digits, '-' or '_', starting with a"
                             " letter (such as brand-a)")
        return value

    @property
    def location(self) -> str | Path:
        """What `open_store` opens: the URL with its password, or the SQLite file."""
        if self.url is None:
            return self.path
        if self.password is None:
            return self.url
        parts = urlsplit(self.url)
        user = quote(parts.username or "", safe="")
        netloc = f"{user}:{quote(self.password.get_secret_value(), safe='')}@{parts.netloc.rpartition('@')[2]}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    @property
    def shown(self) -> str:
        """The store as messages and `status` name it (never a password)."""
        return f"{self.url} (account {self.account})" if self.url else str(self.path)


_HOURS_RANGE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SEGMENT_DIMENSIONS = ("source", "channel", "platform", "agent", "group", "language", "market", "priority", "tag")
PeriodGrain = Literal["day", "week", "month", "quarter"]
PERIOD_GRAINS: tuple[PeriodGrain, ...] = ("day", "week", "month", "quarter")


class MarketSettings(Section):
    """One market: a contact belongs to the first market whose countries, organizations, brands or tags match."""

    name: str = Field(min_length=1)
    countries: list[str] = Field(default_factory=list)
    organizations: list[str] = Field(default_factory=list)  # "source:id" or a bare id
    brands: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)


class BusinessHoursSettings(Section):
    """A business-hours schedule: local weekly hours, holidays, and the groups or markets it serves."""

    time_zone: str = "UTC"
    hours: dict[str, list[str]] = Field(default_factory=dict)  # weekday -> ["09:00-17:00", ...]
    holidays: list[date] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)  # "source:id" or a bare id
    markets: list[str] = Field(default_factory=list)

    @field_validator("time_zone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)") from None
        return value

    @field_validator("hours", mode="before")
    @classmethod
    def _check_hours(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out: dict[str, list[str]] = {}
        for day, ranges in value.items():
            if day not in WEEKDAYS:
                raise ValueError(f"unknown weekday {day!r} (use {', '.join(WEEKDAYS)})")
            ranges = [ranges] if isinstance(ranges, str) else ranges
            for item in ranges:
                match = _HOURS_RANGE.match(str(item))
                if not match or (match.group(3) == "24" and match.group(4) != "00"):
                    raise ValueError(f"{day}: {item!r} is not a range such as \"09:00-17:00\"")
                if int(match.group(1)) * 60 + int(match.group(2)) >= int(match.group(3)) * 60 + int(match.group(4)):
                    raise ValueError(f"{day}: {item!r} ends before it starts")
            out[day] = list(ranges)
        return out


class BusinessInputSettings(Section):
    """A business input no helpdesk holds, for [start, end): cost, orders or an agent's available hours."""

    kind: Literal["operating_cost", "orders", "available_hours"]
    start: date
    end: date
    value: float = Field(ge=0)
    agent: str = ""  # available_hours: the agent as "source:id"
    segment: str = ""  # optional scope such as "channel=chat" or "market=DACH"

    @model_validator(mode="after")
    def _check_range(self) -> BusinessInputSettings:
        if self.end <= self.start:
            raise ValueError("end must be after start (end is exclusive)")
        if (self.kind == "available_hours") != bool(self.agent):
            raise ValueError("agent is required for available_hours and only for it")
        return self


class ReasonSettings(Section):
    """Where contact reasons come from: tags, the ticket type, the insight topic or a custom field."""

    by: str = "tag"  # tag | ticket_type | topic | custom.FIELD
    top: int = Field(default=10, ge=1, le=100)
    exclude: list[str] = Field(default_factory=list)

    @field_validator("by")
    @classmethod
    def _check_by(cls, value: str) -> str:
        if value not in ("tag", "ticket_type", "topic") and not (value.startswith("custom.") and len(value) > 7):
            raise ValueError('expected "tag", "ticket_type", "topic" or "custom.FIELD"')
        return value


class KpiSettings(Section):
    abandon_after: timedelta = timedelta(minutes=30)
    fcr_window_days: int = Field(default=7, ge=1, le=90)
    # Value KPIs (an order feed): an order within this many days after a contact converts it / counts as
    # support-influenced revenue; a refund this many days before or after a contact makes it a refund contact.
    conversion_window_days: int = Field(default=7, ge=1, le=90)
    refund_window_days: int = Field(default=14, ge=1, le=90)
    targets: dict[str, Any] = Field(default_factory=dict)
    # What `compute` keeps up to date: period grains x segmentations over the last history_months.
    periods: list[PeriodGrain] = Field(default_factory=lambda: list(PERIOD_GRAINS))
    segments: list[list[str]] = Field(default_factory=lambda: [[], ["channel"], ["source"], ["language"]])
    history_months: int = Field(default=13, ge=1, le=120)
    custom_segments: dict[str, str] = Field(default_factory=dict)  # segment name -> custom field key
    markets: list[MarketSettings] = Field(default_factory=list)
    default_market: str = "other"
    business_hours: dict[str, BusinessHoursSettings] = Field(default_factory=dict)
    inputs: list[BusinessInputSettings] = Field(default_factory=list)
    reasons: ReasonSettings = Field(default_factory=ReasonSettings)
    currency: str = ""
    # A value resting on fewer contacts than this carries status `low_n`: shown, judged by no target, firing no
    # diagnostic (catalogue 4; 1 keeps every status).
    min_n: int = Field(default=20, ge=1)
    # Period boundaries fall at midnight here, dates on the command line are dates here, and shown times are in
    # it (catalogue 2): an IANA zone such as "Europe/Berlin".
    timezone: str = "UTC"
    # The scale of CSAT answers nobody could classify, stated by the admin: "source:scale seen" -> a scale
    # ("1-5", "good_bad", ... or any "low-high" range). `status` lists the scales seen without one.
    csat_scales: dict[str, str] = Field(default_factory=dict)
    # `[insight] escalation_groups`, handed over by Settings: the KPI facts apply the escalation-group rule.
    _escalation_groups: list[str] = PrivateAttr(default_factory=list)

    @property
    def escalation_groups(self) -> list[str]:
        """Groups (names or ids) whose contacts count as escalated (`[insight] escalation_groups`)."""
        return self._escalation_groups

    _parse_abandon = field_validator("abandon_after", mode="before")(classmethod(lambda cls, v: parse_duration(v)))

    @field_validator("targets")
    @classmethod
    def _check_targets(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_targets(value)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as \"Europe/Berlin\" or \"UTC\"") from None
        return value

    @field_validator("csat_scales")
    @classmethod
    def _check_csat_scales(cls, value: dict[str, str]) -> dict[str, str]:
        for seen, scale in value.items():
            if ":" not in seen.strip(":"):
                raise ValueError(f"{seen!r}: name the scale as SOURCE:SCALE, as `helpdesk-kpi status` shows it")
            ranged = re.fullmatch(r"(\d+)-(\d+)", scale)
            if scale not in SCALES and not (ranged and int(ranged[1]) < int(ranged[2])):
                raise ValueError(f"{seen!r}: unknown scale {scale!r}; one of {', '.join(SCALES)} or LOW-HIGH")
        return value

    @model_validator(mode="after")
    def _check_kpi_sections(self) -> KpiSettings:
        for by in self.segments:
            for dim in by:
                if dim not in SEGMENT_DIMENSIONS and dim not in self.custom_segments and not dim.startswith("custom."):
                    raise ValueError(f"segments: unknown segment {dim!r}")
        defaults = [name for name, s in self.business_hours.items() if not s.groups and not s.markets]
        if len(defaults) > 1:
            raise ValueError(f"business_hours: only one schedule may serve everything else, found {defaults}")
        clash = set(self.custom_segments) & set(SEGMENT_DIMENSIONS)
        if clash:
            raise ValueError(f"custom_segments: {sorted(clash)} is a built-in segment")
        return self


class ScheduleSettings(Section):
    sync_every: timedelta = timedelta(minutes=15)
    push_every: timedelta = timedelta(minutes=15)
    reconcile_at: str = "03:00"
    reconcile_lookback: timedelta = timedelta(days=7)
    # The daemon writes the HTML report this often to report_path (off when report_every is not set).
    report_every: timedelta | None = None
    report_path: str = "helpdesk-kpi-report.html"

    @field_validator("report_every", mode="before")
    @classmethod
    def _parse_report_every(cls, value: Any) -> timedelta | None:
        return None if value in (None, "", 0) else parse_duration(value)

    _parse_durations = field_validator("sync_every", "push_every", "reconcile_lookback", mode="before")(
        classmethod(lambda cls, v: parse_duration(v))
    )

    @field_validator("reconcile_at")
    @classmethod
    def _check_time(cls, value: str) -> str:
        if not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", value):
            raise ValueError('expected a UTC time of day such as "03:00"')
        return value


class SyncSettings(Section):
    """[sync]: how a first sync reads a large account (docs/operations.md, "First sync of a large account")."""

    # Fill history newest first where the helpdesk's API takes a time window (the current month's
    # KPIs are final early); false: read oldest first, as one plain pass.
    backfill: bool = True
    # Threads reading older months at once, each with its own connection; fewer when the
    # helpdesk's rate-limit headers allow fewer.
    backfill_threads: int = Field(default=4, ge=1, le=16)
    # How long one daemon sync goes on filling older months after its incremental reads, so
    # that the next sync reads new changes in between (`helpdesk-kpi sync` fills to the end).
    # None (an empty string in the file): every sync fills to the end.
    backfill_slice: timedelta | None = timedelta(minutes=15)

    @field_validator("backfill_slice", mode="before")
    @classmethod
    def _parse_slice(cls, value: Any) -> timedelta | None:
        return None if value in (None, "", 0) else parse_duration(value)


def e_mail_addresses(value: list[str]) -> list[str]:
    """Recipients as given, each checked to be one address (the server says the rest)."""
    for address in value:
        if not re.fullmatch(r"[^@\s]+@[^@\s]+", address):
            raise ValueError(f"{address!r} is not an e-mail address")
    return value


class SmtpSettings(Section):
    """[smtp]: the mail server alerts and digests are sent through (STARTTLS unless told otherwise)."""

    host: str = ""
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    username: str = ""
    password: SecretStr | None = None  # or HELPDESK_KPI_SMTP__PASSWORD in the environment
    sender: str = ""  # the From address
    timeout_seconds: float = Field(default=20.0, gt=0)
    # A PEM file of the certificate authorities trusted for STARTTLS instead of the system's (a private CA).
    ca_file: Path | None = None


_QUIET_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
ALERT_SCOPES = ("channel", "market", "group")
_KPI_ALERT_PERIODS: tuple[Literal["day", "week"], ...] = ("day",)


class AlertSinks(Section):
    """Where alerts go: webhooks (generic JSON, or Slack's body with `slack`), e-mail, a private note on the contact."""

    # Webhook URLs carry their token in the path: secrets, shown and stored by host only.
    webhooks: list[SecretStr] = Field(default_factory=list)
    slack: bool = False  # the webhooks get a Slack-compatible body ({"text", "blocks"}) instead of the alert's JSON
    email: list[str] = Field(default_factory=list)  # recipients, sent through [smtp]
    note: bool = False  # a private note on the contact, written by its helpdesk's writer

    @field_validator("webhooks")
    @classmethod
    def _check_webhooks(cls, value: list[SecretStr]) -> list[SecretStr]:
        for i, url in enumerate(value, 1):
            if not re.match(r"^https?://[^/\s]+", url.get_secret_value()):
                raise ValueError(f"webhook {i} is not an http(s) URL")
        return value

    @field_validator("email")
    @classmethod
    def _check_email(cls, value: list[str]) -> list[str]:
        return e_mail_addresses(value)

    def any(self) -> bool:
        return bool(self.webhooks or self.email or self.note)


class AlertRoute(AlertSinks):
    """A route: the alerts of contacts (and KPI values) matching every list given go to this route's sinks."""

    name: str = ""  # shown with each delivery ("route 2" when empty)
    channel: list[str] = Field(default_factory=list)
    market: list[str] = Field(default_factory=list)
    group: list[str] = Field(default_factory=list)  # "source:id" or a bare group id

    @model_validator(mode="after")
    def _check_sinks(self) -> AlertRoute:
        if not self.any():
            raise ValueError("a route needs at least one sink (webhooks, email or note)")
        return self


class AlertSettings(AlertSinks):
    """[alerts]: contacts at risk of missing their response or resolution target, KPI breaches; where to send them.

    The sinks given at the top level receive every alert no route matches.
    """

    enabled: bool = False
    # A contact is at risk once this share of its target has passed without a reply (or resolution).
    at_risk_share: float = Field(default=0.75, gt=0, lt=1)
    first_response: bool = True  # watch open contacts against their first-response target ([kpis.targets])
    # Resolution targets (created -> first resolution), watched only where set: "default", "channel.NAME",
    # "market.NAME", "group.ID" -> a duration such as "8h"; the most specific wins (group, market, channel).
    resolution_targets: dict[str, timedelta] = Field(default_factory=dict)
    # "22:00-07:00" in [kpis] timezone: alerts decided then are held and sent as one summary when it ends.
    quiet_hours: str = ""
    max_per_hour: int = Field(default=30, ge=1)  # single alerts per hour; the rest of a run go as one summary
    # Count each contact's wait in its business hours ([kpis.business_hours], the clock of the `_bh` KPIs), against
    # the `_bh` first-response target: nothing is at risk while the team is off. Contacts no schedule covers, and
    # every contact while this is false, wait in calendar time.
    business_hours: bool = False
    # A contact that crossed its threshold longer ago than this when first seen (a backlog read late) is
    # summarised, not alerted one by one; as is everything already past its threshold when alerting started.
    stale_after: timedelta = timedelta(hours=6)
    kpis: list[str] = Field(default_factory=list)  # KPI ids whose running day/week status turning `breach` alerts
    kpi_periods: list[Literal["day", "week"]] = Field(default_factory=lambda: list(_KPI_ALERT_PERIODS))
    kpi_by: list[str] = Field(default_factory=list)  # also per segment, e.g. ["channel"] (one segmentation)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    routes: list[AlertRoute] = Field(default_factory=list)

    _parse_stale = field_validator("stale_after", mode="before")(classmethod(lambda cls, v: parse_duration(v)))

    @field_validator("resolution_targets", mode="before")
    @classmethod
    def _check_resolution(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out: dict[str, timedelta] = {}
        for key, raw in value.items():
            scope, _, name = str(key).partition(".")
            if key != "default" and (scope not in ALERT_SCOPES or not name):
                raise ValueError(f"{key!r}: use \"default\", \"channel.NAME\", \"market.NAME\" or \"group.ID\"")
            try:
                out[str(key)] = parse_duration(raw)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
            if out[str(key)].total_seconds() <= 0:
                raise ValueError(f"{key}: a target must be longer than zero")
        return out

    @field_validator("quiet_hours")
    @classmethod
    def _check_quiet(cls, value: str) -> str:
        if value and (not _QUIET_HOURS.match(value) or value[:5] == value[6:]):
            raise ValueError('expected a local time range such as "22:00-07:00"')
        return value

    @field_validator("kpis")
    @classmethod
    def _check_kpis(cls, value: list[str]) -> list[str]:
        unknown = [k for k in value if k not in catalogue.BY_ID]
        if unknown:
            raise ValueError(f"unknown KPI id {unknown[0]!r}")
        return value

    @field_validator("kpi_by")
    @classmethod
    def _check_by(cls, value: list[str]) -> list[str]:
        for dim in value:
            if dim not in SEGMENT_DIMENSIONS:
                raise ValueError(f"unknown segment {dim!r}; one of {', '.join(SEGMENT_DIMENSIONS)}")
        return value


class DigestSinks(Section):
    """Where a digest goes: any of e-mail, a webhook and a folder, several at once."""

    email_to: list[str] = Field(default_factory=list)  # sent through [smtp]
    webhook_url: SecretStr | None = None  # its path often holds a token: HELPDESK_KPI_DIGESTS__WEBHOOK_URL
    webhook_style: Literal["json", "slack"] = "json"  # slack: a Slack-compatible body (blocks and text)
    file_dir: str = ""  # a folder: each digest is also written there as .html and .txt

    @field_validator("email_to")
    @classmethod
    def _check_addresses(cls, value: list[str]) -> list[str]:
        return e_mail_addresses(value)

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if not re.match(r"^https?://[^/\s]+", value.get_secret_value()):
            raise ValueError("expected an http:// or https:// URL")  # never echo it: its path may hold a token
        return value

    @property
    def any(self) -> bool:
        return bool(self.email_to or self.webhook_url or self.file_dir)


class DigestSettings(DigestSinks):
    """[digests]: the daily, weekly, monthly and quarterly review digests and where they go.

    Each digest covers the last complete period of its cadence (in [kpis] timezone) against the one before; the
    daemon sends each cadence of `cadences` once per period, from `send_at` local time on the day after it ends.
    The sinks of this table serve every cadence without a `[digests.to.<cadence>]` table of its own (the team's
    channel gets the daily digest, the head of support the monthly one by e-mail).
    """

    enabled: bool = False  # the daemon sends digests (`helpdesk-kpi digest` works either way)
    cadences: list[Literal["daily", "weekly", "monthly", "quarterly"]] = ["weekly", "monthly", "quarterly"]
    send_at: str = "08:00"  # local time of [kpis] timezone, HH:MM
    # Each cadence's KPI selection; a cadence not named here keeps its default (the review habits of support
    # leads: daily the time-sensitive figures, weekly volume and agent performance, monthly satisfaction and
    # cost, quarterly retention and the strategic figures).
    kpis: dict[str, list[str]] = Field(default_factory=dict)
    movers: int = Field(default=5, ge=0, le=50)  # the biggest movers shown, each way
    reasons: int = Field(default=5, ge=0, le=50)  # the top contact reasons shown
    # Sinks: any of the three (inherited), several at once; `to` gives a cadence sinks of its own instead.
    to: dict[str, DigestSinks] = Field(default_factory=dict)

    DEFAULT_KPIS: ClassVar[dict[str, tuple[str, ...]]] = {
        "daily": ("first_response_time_median", "first_response_time_p90", "service_level_pct", "backlog",
                  "ticket_volume"),
        "weekly": ("ticket_volume", "resolution_time_median", "one_touch_resolution_pct", "fcr_pct",
                   "agent_touches_avg", "handle_time_avg", "reopen_rate_pct"),
        "monthly": ("csat_pct", "csat_response_rate_pct", "nps", "ces_avg", "cost_per_interaction",
                    "cost_per_resolution", "interactions_per_order", "agent_utilization_pct"),
        "quarterly": ("customer_retention_pct", "repeat_contact_rate_pct", "nps", "csat_pct", "fcr_pct",
                      "bot_deflection_rate_pct", "language_coverage", "ticket_volume"),
    }

    @field_validator("send_at")
    @classmethod
    def _check_send_at(cls, value: str) -> str:
        if not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", value):
            raise ValueError('expected a local time of day such as "08:00"')
        return value

    @field_validator("kpis")
    @classmethod
    def _check_kpis(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for cadence, ids in value.items():
            if cadence not in cls.DEFAULT_KPIS:
                raise ValueError(f"{cadence!r} is not a cadence; use daily, weekly, monthly or quarterly")
            if not ids:
                raise ValueError(f"{cadence}: name at least one KPI (or leave the cadence out for its default)")
            for kpi_id in ids:
                if kpi_id not in catalogue.BY_ID:
                    raise ValueError(f"{cadence}: unknown KPI {kpi_id!r} (see `helpdesk-kpi kpis` for the ids)")
        return value

    @field_validator("to")
    @classmethod
    def _check_to(cls, value: dict[str, DigestSinks]) -> dict[str, DigestSinks]:
        for cadence, sinks in value.items():
            if cadence not in cls.DEFAULT_KPIS:
                raise ValueError(f"{cadence!r} is not a cadence; use daily, weekly, monthly or quarterly")
            if not sinks.any:
                raise ValueError(f"{cadence}: set email_to, webhook_url or file_dir (or leave the table out for"
                                 " the [digests] sinks)")
        return value

    @model_validator(mode="after")
    def _check_sinks(self) -> DigestSettings:
        nowhere = [c for c in self.cadences if not self.sinks_of(c).any]
        if self.enabled and nowhere:
            raise ValueError(f"enabled: the daemon needs somewhere to send the {', '.join(nowhere)} digest: set"
                             " email_to, webhook_url or file_dir (in [digests], or [digests.to.<cadence>])")
        return self

    def sinks_of(self, cadence: str) -> DigestSinks:
        """Where the digest of `cadence` goes: its own `[digests.to.<cadence>]`, else this table's sinks."""
        return self.to.get(cadence, self)

    def kpis_of(self, cadence: str) -> list[str]:
        """The KPI selection of `cadence`: the configured one, else the default."""
        return list(self.kpis.get(cadence) or self.DEFAULT_KPIS[cadence])


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
        if value not in SCALES:
            raise ValueError(f"unknown scale; one of {', '.join(SCALES)}")
        return value


class SurveySettings(Section):
    mappings: list[SurveyMapping] = Field(default_factory=list)


class PrivacySettings(Section):
    """Which personal fields are stored (none by default), for how long, and the key of the e-mail hash."""

    store_names: bool = False
    store_emails: bool = False
    store_phones: bool = False
    store_message_bodies: bool = False  # message bodies, subjects and ticket descriptions
    store_survey_comments: bool = False
    # Agents' display names: the account's own staff, not its customers, so kept by default (a lead reads the
    # agent table by name); off stores agents by id only.
    store_agent_names: bool = True
    retention_days: int = Field(default=730, ge=1)  # contacts idle longer than this are purged
    # Key of the keyed hash that stands in for an e-mail address (cross-helpdesk identity,
    # survey imports, erasure by address). Give it through the environment.
    hash_key: SecretStr | None = None
    _read_bodies: bool = PrivateAttr(default=False)  # set from [insight] enabled (Settings)

    @property
    def read_message_bodies(self) -> bool:
        """Connectors read message bodies into memory for conversation insight (`[insight] enabled`)."""
        return self._read_bodies or self.store_message_bodies

    def hash_key_bytes(self) -> bytes | None:
        secret = self.hash_key.get_secret_value() if self.hash_key else ""
        return secret.encode("utf-8") if secret else None


class WritebackMapping(Section):
    """One per-record metric written into one custom field of one object of one helpdesk."""

    helpdesk: str
    object: str
    metric: str
    field: str = Field(min_length=1)

    @model_validator(mode="after")
    def _check_known(self) -> WritebackMapping:
        check_mapping(self.helpdesk, self.object, self.metric)
        return self


class WritebackNote(Section):
    """A private note added once per contact that meets `rule`, from `template`."""

    helpdesk: str
    rule: Literal["repeat_contact", "detractor", "sla_breached"]
    template: str = Field(min_length=1)

    @field_validator("helpdesk")
    @classmethod
    def _check_writable(cls, value: str) -> str:
        if value not in registry.writable():
            raise ValueError(f"unknown helpdesk {value!r}; writable: {', '.join(registry.writable())}")
        return value

    @field_validator("template")
    @classmethod
    def _check_template(cls, value: str) -> str:
        check_template(value)
        return value


class WritebackSettings(Section):
    enabled: bool = False
    max_writes_per_run: int = Field(default=1000, ge=1)  # write requests per push, so pushing never starves syncing
    mappings: list[WritebackMapping] = Field(default_factory=list)
    notes: list[WritebackNote] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_unique(self) -> WritebackSettings:
        seen: set[tuple[str, str, str]] = set()
        for m in self.mappings:
            key = (m.helpdesk, m.object, m.field)
            if key in seen:
                raise ValueError(f"mappings: {m.helpdesk} {m.object} field {m.field!r} is mapped twice")
            seen.add(key)
        rules = [(n.helpdesk, n.rule) for n in self.notes]
        if len(rules) != len(set(rules)):
            raise ValueError("notes: one template per helpdesk and rule")
        return self


class InsightSettings(Section):
    """Conversation insight (off by default: it reads the text of customers' messages during the sync).

    Message bodies are read in memory only: what is kept is each message's detected language,
    sentiment score and topic, and facts derived from them (docs/privacy.md). The bodies
    themselves stay unstored unless `[privacy] store_message_bodies` says otherwise.
    """

    enabled: bool = False
    # Groups (by name or id) that are an escalation tier: a contact assigned to one is escalated.
    escalation_groups: list[str] = Field(default_factory=list)
    # Topic rules per language: {"en": {"where is my order": ["where is my order", "tracking", "re:^wism"]}};
    # "*" holds rules for every language. A rule is a phrase (matched as whole words, case-insensitively)
    # or, prefixed "re:", a regular expression. The first customer message's first matching topic wins.
    topics: dict[str, dict[str, list[str]]] = Field(default_factory=dict)


class Settings(BaseSettings):
    """Everything the program reads from its configuration, validated."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    store: StoreSettings = Field(default_factory=StoreSettings)
    # [connectors.NAME] tables, each validated with the settings model its connector provides.
    connectors: dict[str, ConnectorSettings] = Field(default_factory=dict)
    kpis: KpiSettings = Field(default_factory=KpiSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    surveys: SurveySettings = Field(default_factory=SurveySettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    writeback: WritebackSettings = Field(default_factory=WritebackSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    digests: DigestSettings = Field(default_factory=DigestSettings)
    insight: InsightSettings = Field(default_factory=InsightSettings)

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

    @field_validator("connectors", mode="before")
    @classmethod
    def _check_connectors(cls, value: Any) -> Any:
        """Each table by its connector's own model; every problem of every table is reported at once."""
        if not isinstance(value, dict):
            return value
        plugins = registry.plugins()
        checked: dict[str, Any] = {}
        problems: list[InitErrorDetails] = []
        for name, table in value.items():
            plugin = plugins.get(name)
            if plugin is None:
                error = PydanticCustomError("unknown_connector", "unknown helpdesk; known: {known}",
                                            {"known": ", ".join(plugins)})
                problems.append({"type": error, "loc": (name,), "input": name})
                continue
            try:
                checked[name] = table if isinstance(table, plugin.settings) else plugin.settings.model_validate(table)
            except ValidationError as exc:
                for e in exc.errors():
                    detail: InitErrorDetails = {"type": e["type"], "loc": (name, *e["loc"]), "input": e["input"]}
                    if "ctx" in e:
                        detail["ctx"] = e["ctx"]
                    problems.append(detail)
        if problems:
            raise CoreValidationError.from_exception_data("connectors", problems)
        return checked

    @model_validator(mode="after")
    def _hand_privacy_to_connectors(self) -> Settings:
        """Connectors are built from their own table, so each table carries the [privacy] switches (and whether
        conversation insight needs message bodies read into memory)."""
        self.privacy._read_bodies = self.insight.enabled
        self.kpis._escalation_groups = list(self.insight.escalation_groups)  # the KPI facts read [kpis] only
        for section in self.connectors.values():
            section.with_privacy(self.privacy)
        return self

    @model_validator(mode="after")
    def _check_alert_clock(self) -> Settings:
        if self.alerts.business_hours and not self.kpis.business_hours:
            raise ValueError("alerts.business_hours: needs at least one [kpis.business_hours.NAME] schedule to count"
                             " business time by")
        return self

    def enabled_connectors(self) -> dict[str, ConnectorSettings]:
        """The configured and enabled connectors, by name, in registry order."""
        order = {name: i for i, name in enumerate(registry.names())}
        enabled = [(name, s) for name, s in self.connectors.items() if s.enabled]
        return dict(sorted(enabled, key=lambda item: order.get(item[0], len(order))))


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
        raise ConfigProblem(path, [_problem(e["loc"], e["msg"]) for e in exc.errors()]) from None
    if not settings.store.path.is_absolute():
        # A relative store path is relative to the config file, so cron and systemd agree.
        settings.store.path = (path.parent / settings.store.path).resolve()
    return settings


def _problem(loc: tuple[Any, ...], message: str) -> tuple[str, str]:
    """(key, reason) of a validation error; a check across tables names its key at the start of its message."""
    message = message.removeprefix("Value error, ")
    key = _key(loc)
    named = re.match(r"^([a-z_]+(?:\.[a-z_]+)+): (.+)$", message, re.S)
    if key == "(root)" and named:
        return named.group(1), named.group(2)
    return key, message


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
    keys = "|".join(sorted(map(re.escape, secret_keys())))
    holds_secret = re.search(rf"^\s*({keys})\s*=\s*\"[^\"]+\"", text, re.M)
    return bool(holds_secret) and bool(mode & 0o044)


def secret_keys() -> set[str]:
    """Every key that holds a secret: the `SecretStr` fields of each connector's settings and of `[privacy]`."""
    models: list[type[BaseModel]] = [PrivacySettings, DigestSettings, StoreSettings,
                                     *(p.settings for p in registry.plugins().values())]
    return {name for model in models for name, info in model.model_fields.items()
            if info.annotation is SecretStr or SecretStr in get_args(info.annotation)}
