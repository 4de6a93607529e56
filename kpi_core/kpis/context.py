"""What every computation needs: the store, the KPI settings, the time of computing, targets and schedules."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone, tzinfo
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, cast

from kpi_core.kpis import periods, segments
from kpi_core.kpis.business_hours import BusinessHours
from kpi_core.kpis.targets import Targets
from kpi_core.settings import KpiSettings, Settings
from kpi_core.store import Store


@dataclass
class Context:
    store: Store
    settings: KpiSettings
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    # A PostgreSQL store's local files (the columnar copy, columns.py) live beside `[store] path`; None: in memory.
    beside: Path | None = None
    targets: Targets = field(init=False)
    hours: BusinessHours = field(init=False)
    zone: tzinfo = field(init=False)  # `[kpis] timezone`: periods' dates are dates there (catalogue 2)

    def __post_init__(self) -> None:
        self.now = self.now.astimezone(timezone.utc).replace(microsecond=0)
        self.zone = periods.zone_of(self.settings.timezone)
        self.targets = Targets(self.settings.targets)
        self.hours = BusinessHours.from_settings(self.settings)
        self.hours.register(self.conn)

    @staticmethod
    def now_utc(moment: datetime) -> datetime:
        return moment.astimezone(timezone.utc).replace(microsecond=0)

    @property
    def conn(self) -> sqlite3.Connection:
        return self.store.db.conn

    @property
    def now_epoch(self) -> int:
        return int(self.now.timestamp())

    @property
    def now_iso(self) -> str:
        return self.now.strftime("%Y-%m-%dT%H:%M:%SZ")

    @cached_property
    def today(self) -> date:
        """Today in `[kpis] timezone`: the day the running periods contain (`now` is fixed for a computation)."""
        return periods.today_in(self.now, self.zone)

    def bound(self, day: date) -> str:
        """The SQL bound of the local date `day`'s first instant (see `periods.day_text`)."""
        return periods.day_text(day, self.zone)

    def instant(self, day: date) -> str:
        """The local date `day`'s first instant in the store's format ('YYYY-MM-DDTHH:MM:SSZ')."""
        return periods.instant_text(day, self.zone)

    def params(self) -> dict[str, Any]:
        return {
            "now": self.now_epoch,
            "abandon_s": int(self.settings.abandon_after.total_seconds()),
            "window_s": self.settings.fcr_window_days * 86400,
        }

    def market_of_contact(self, country: str) -> str:
        return segments.market_sql(
            self.settings.markets, self.settings.default_market, source="c.source",
            country=country, organization="c.organization_id",
            brand="c.brand_id", tags="c.tags",
        )

    def market_of_person(self, duck: bool = False) -> str:
        return segments.market_sql(
            self.settings.markets, self.settings.default_market, source="s.source", country="rp.country",
            organization="rp.organization_id", brand="NULL", tags="rp.tags", duck=duck,
        )

    def facts_fingerprint(self) -> str:
        """Changes when the settings that shape the per-contact facts change (markets, schedules, the gap that
        ends a live session, the escalation groups)."""
        shaping: dict[str, Any] = {
            "abandon_after": self.settings.abandon_after.total_seconds(),
            "csat_scales": self.settings.csat_scales,
            "markets": [m.model_dump() for m in self.settings.markets],
            "default_market": self.settings.default_market,
            "fcr_window_days": self.settings.fcr_window_days,
            "business_hours": {k: v.model_dump(mode="json") for k, v in self.settings.business_hours.items()},
        }
        if self.settings.escalation_groups:  # absent when none: stores computed before the setting stay fresh
            shaping["escalation_groups"] = self.settings.escalation_groups
        return _digest(shaping)

    def values_fingerprint(self) -> str:
        """Changes when any setting that shapes stored values changes (targets are applied on reading)."""
        thresholds = {c: self.targets.channel_frt_minutes(c) for c in sorted(
            {"chat", "messaging", "phone", "email", "web_form", "api", "social", "other"})}
        shaping: dict[str, Any] = {
            "facts": self.facts_fingerprint(),
            "abandon_after": self.settings.abandon_after.total_seconds(),
            "fcr_window_days": self.settings.fcr_window_days,
            "service_level_minutes": thresholds,
            "custom_segments": self.settings.custom_segments,
            "engine": ENGINE_VERSION,
            "value_windows": [self.settings.conversion_window_days, self.settings.refund_window_days],
        }
        if self.settings.timezone != "UTC":  # absent for UTC: stores computed before the setting existed stay fresh
            shaping["timezone"] = self.settings.timezone
        return _digest(shaping)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """One immediate write transaction (reads then writes without a lost-update window)."""
        if self.conn.in_transaction:  # inside the caller's transaction: a savepoint, as sqlite-utils nests
            with self.store.db.atomic():
                yield
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()


# Bump when a change to the engine alters stored values, so `compute` redoes them.
ENGINE_VERSION = 1


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _ServerConnection(Protocol):
    """What a PostgreSQL store's connection (PgConnection) adds to the DB-API: bulk writes and streamed reads."""

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None: ...

    def stream(self, sql: str, params: Sequence[Any] = (), size: int = 10_000) -> Iterator[list[Any]]: ...


def copy_rows(conn: sqlite3.Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Rows into `table` of a PostgreSQL store in one COPY stream (PgConnection.copy_rows): many rows without a
    round trip each."""
    cast(_ServerConnection, conn).copy_rows(table, columns, rows)


def stream_rows(conn: sqlite3.Connection, sql: str, size: int) -> Iterator[list[Any]]:
    """A query's rows of a PostgreSQL store, `size` at a time, without holding the whole result
    (PgConnection.stream); the caller may write between two batches."""
    return cast(_ServerConnection, conn).stream(sql, (), size)


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM kpi_meta WHERE key = ?", [key]).fetchone()
    return row[0] if row else None


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT INTO kpi_meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                 [key, value])


def context_for(store: Store, settings: Settings | KpiSettings, now: datetime | None = None) -> Context:
    """The context of one computation or reading; given the whole settings, a PostgreSQL store's columnar copy
    is kept beside `[store] path` (the daemon's state file is there too)."""
    beside = settings.store.path if isinstance(settings, Settings) and store.on_server else None
    return Context(store, kpi_settings(settings), now or datetime.now().astimezone(), beside=beside)


def kpi_settings(settings: Settings | KpiSettings) -> KpiSettings:
    """The `[kpis]` settings, whether given the whole settings or that section."""
    return settings.kpis if isinstance(settings, Settings) else settings
