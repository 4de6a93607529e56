"""On the sandbox helpdesks: the engine's values agree with the same KPIs computed here straight from the world.

The world is synced through the real connectors over loopback; the independent figures use
only the world's own tickets, messages and ratings (epoch seconds), never the store.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from connectors.sandbox import Sandbox
from connectors.sandbox.world import Ticket, World
from kpi_core.kpis.api import compute, kpi_rows
from kpi_core.settings import Settings, load_settings
from kpi_core.store import open_store
from kpi_core.sync import sync_all

POSITIVE = {"zendesk": lambda s: s >= 1, "intercom": lambda s: s >= 4, "freshdesk": lambda s: s > 100}


class Synced:
    def __init__(self, world: World, settings: Settings, since: date, until: date, now: datetime) -> None:
        self.world, self.settings, self.since, self.until, self.now = world, settings, since, until, now

    def rows(self, kpi: str, by: list[str] | None = None) -> dict[tuple[Any, ...], dict[str, Any]]:
        store = open_store(self.settings.store.path)
        try:
            found = kpi_rows(store, self.settings, None, self.since, self.until, by, [kpi], now=self.now)
        finally:
            store.close()
        return {tuple(r["segment"].values()): r for r in found}


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synced]:
    workdir: Path = tmp_path_factory.mktemp("kpi-sandbox")
    sandbox = Sandbox.generate(seed=5, tickets=300)
    sandbox.start()
    try:
        config = workdir / "helpdesk-kpi.toml"
        config.write_text(sandbox.config_toml(str(workdir / "store.sqlite"), start_date="2000-01-01"))
        settings = load_settings(config)
        store = open_store(settings.store.path)
        world = sandbox.world
        now = datetime.now(timezone.utc)
        since = datetime.fromtimestamp(world.start, timezone.utc).date()
        until = now.date() + timedelta(days=1)
        try:
            results = sync_all(store, settings)
            assert all(r.ok for r in results), [r.error for r in results]
            compute(store, settings, since, until, grains=["month"], segments=[[]], now=now)
        finally:
            store.close()
        yield Synced(world, settings, since, until, now)
    finally:
        sandbox.stop()


def _kept(world: World) -> list[Ticket]:
    return [t for data in world.sources.values() for t in data.tickets.values() if not t.deleted and not t.spam]


def _first_reply_minutes(ticket: Ticket) -> float | None:
    customer = [m.created_at for m in ticket.messages if m.role == "customer"]
    if not customer:
        return None
    start = customer[0] if ticket.outbound else max(ticket.created_at, customer[0])
    replies = [m.created_at for m in ticket.messages if m.role == "agent" and m.public and m.created_at >= customer[0]]
    return (replies[0] - start) / 60 if replies else None


def _channel(ticket: Ticket) -> str:
    """Freshdesk renders every outbound ticket as source 10, outbound e-mail (the catalogue's `email`)."""
    return "email" if ticket.source == "freshdesk" and ticket.outbound else ticket.channel


def test_volume_per_source_and_channel(synced: Synced) -> None:
    expected: dict[tuple[str, str], int] = {}
    for t in _kept(synced.world):
        expected[(t.source, _channel(t))] = expected.get((t.source, _channel(t)), 0) + 1
    found = {k: r["value"] for k, r in synced.rows("ticket_volume", ["source", "channel"]).items()}
    assert found == expected


def test_first_response_median(synced: Synced) -> None:
    minutes = sorted(m for t in _kept(synced.world) if (m := _first_reply_minutes(t)) is not None)
    expected = minutes[math.ceil(0.5 * len(minutes)) - 1]
    row = synced.rows("first_response_time_median")[()]
    assert row["n"] == len(minutes)
    assert row["value"] == pytest.approx(expected, abs=1e-3)


def _customer_wrote(ticket: Ticket) -> bool:
    """An outbound contact nobody answered counts only in volume, mix and backlog (catalogue 2c)."""
    return not ticket.outbound or any(m.role == "customer" for m in ticket.messages)


def test_csat(synced: Synced) -> None:
    answers = [POSITIVE[t.source](t.rating.score) for t in _kept(synced.world)
               if t.rating is not None and t.rating.answered_at is not None and t.rating.score is not None
               and _customer_wrote(t)]
    row = synced.rows("csat_pct")[()]
    assert (row["numerator"], row["denominator"]) == (sum(answers), len(answers))


def test_response_rate(synced: Synced) -> None:
    answerable = replied = 0
    for t in _kept(synced.world):
        customer = [m for m in t.messages if m.role == "customer"]
        agent = [m for m in t.messages if m.role == "agent" and m.public and customer
                 and m.created_at >= customer[0].created_at]
        bot_only = bool(t.resolved_times) and not agent and any(m.role == "bot" for m in t.messages)
        if customer and not bot_only:
            answerable += 1
            replied += bool(agent)
    row = synced.rows("response_rate_pct")[()]
    assert (row["numerator"], row["denominator"]) == (replied, answerable)
