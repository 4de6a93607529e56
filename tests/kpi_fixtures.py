"""Hand-built stores for the KPI engine tests: contacts, events and surveys written straight into a real store."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from connectors.base import Connector
from kpi_core.kpis.api import kpi_rows
from kpi_core.settings import KpiSettings
from kpi_core.store import Store, open_store
from kpi_core.sync import sync_source

# The default "now" of the tests: well after March 2026 has settled (FCR windows passed).
NOW = datetime(2026, 4, 20, 12, 0, tzinfo=timezone.utc)
MARCH = (date(2026, 3, 1), date(2026, 4, 1))


def ts(day: int, hour: int = 9, minute: int = 0, second: int = 0, month: int = 3) -> str:
    """A March 2026 (by default) UTC timestamp in the store's format."""
    return datetime(2026, month, day, hour, minute, second, tzinfo=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def plus(stamp: str, **delta: float) -> str:
    moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) + timedelta(**delta)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Data:
    """Rows to write: contacts by id, plus status events, surveys and people."""

    source: str = "zendesk"
    contacts: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    surveys: list[dict[str, Any]] = field(default_factory=list)
    people: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)

    def contact(self, cid: str, created: str, **facts: Any) -> dict[str, Any]:
        """A contact; `reply` (minutes after its start) and `resolved` (hours after creation) are shortcuts."""
        reply, resolved = facts.pop("reply", None), facts.pop("resolved", None)
        row: dict[str, Any] = {"source": self.source, "source_id": cid, "channel": "email", "status": "open",
                               "created_at": created}
        if reply is not None:
            start = facts.get("first_customer_message_at") or created
            row["first_agent_reply_at"] = plus(start, minutes=reply)
            row["agent_replies"] = 1
        if resolved is not None:
            row["first_resolved_at"] = row["last_resolved_at"] = plus(created, hours=resolved)
            row["status"] = "resolved"
        row.update(facts)
        self.contacts.append(row)
        return row

    def event(self, cid: str, kind: str, at: str) -> None:
        self.events.append({"source": self.source, "source_id": f"{cid}-{kind}-{at}", "contact_id": cid,
                            "kind": kind, "at": at})

    def message(self, cid: str, role: str, at: str, public: bool = True) -> None:
        """A message on contact `cid` by a `customer`, `agent` or `bot` (a private note: public=False)."""
        self.messages.append({"source": self.source, "source_id": f"{cid}-{role}-{at}", "contact_id": cid,
                              "author_id": f"{role}-1", "author_role": role, "public": public, "created_at": at})

    def survey(self, sid: str, kind: str, score: float, scale: str, at: str, contact: str | None = None,
               requester: str | None = None, is_positive: bool | None = None) -> None:
        row: dict[str, Any] = {"source": self.source, "source_id": sid, "kind": kind, "score": float(score),
                               "scale": scale, "created_at": at}
        if is_positive is not None:  # what a connector stores for a coded scale of its own
            row["is_positive"] = is_positive
        if contact is not None:
            row["contact_id"] = contact
        if requester is not None:
            row["requester_id"] = requester
        self.surveys.append(row)

    def write(self, store: Store) -> Store:
        for table, rows in (("people", self.people), ("contacts", self.contacts), ("status_events", self.events),
                            ("messages", self.messages),
                            ("survey_responses", self.surveys)):
            if rows:
                store.upsert(table, rows)
        store.db.conn.commit()
        return store


def sync_cleanly(store: Store, connector: Connector) -> Store:
    """The real sync of a hand-built account served over loopback: it must succeed with nothing quarantined."""
    try:
        result = sync_source(store, connector)
    finally:
        connector.close()
    assert result.ok, result.error
    assert store.count("quarantine") == 0
    return store


# Where `make_store` opens its stores: a SQLite file in the test's folder, or, while `on_both_stores`
# (tests/conftest.py) runs a test on PostgreSQL, an account of its own in that test's database.
SERVER: dict[str, str] = {}


def varied_facts(rng: random.Random) -> dict[str, Any]:
    """The facts of one varied contact: channel, language, one of 40 requesters, tags, most often a reply (of
    one to three agent replies) and a resolution; for contact(...)."""
    facts: dict[str, Any] = {"channel": rng.choice(["email", "chat", "phone", "web_form"]),
                             "language": rng.choice(["en", "de", "und"]), "requester_id": f"r{rng.randrange(40)}",
                             "tags": rng.sample(["billing", "refund", "bug"], rng.randrange(3))}
    if rng.random() < 0.85:
        facts["reply"] = rng.choice([1, 3, 45, 600, 2000])
        facts["agent_replies"] = rng.choice([1, 1, 2, 3])
    if rng.random() < 0.7:
        facts["resolved"] = rng.choice([0.5, 2, 30, 100])
    return facts


def make_store(tmp_path: Path, data: Data | None = None, name: str = "kpi.sqlite") -> Store:
    if SERVER:
        account = "s_" + "".join(c if c.isalnum() else "_" for c in name.lower())
        store = open_store(SERVER["url"], account)
    else:
        store = open_store(tmp_path / name)
    return data.write(store) if data else store


def rows(store: Store, settings: KpiSettings | None = None, *, period: str | None = "month",
         since: date = MARCH[0], until: date = MARCH[1], by: list[str] | None = None,
         kpis: list[str] | None = None, now: datetime = NOW) -> list[dict[str, Any]]:
    return kpi_rows(store, every_status(settings), period, since, until, by, kpis, now=now)


def every_status(settings: KpiSettings | None = None) -> KpiSettings:
    """The settings with `min_n` 1 unless they state it: these stores hold a handful of contacts, and the tests
    read the statuses of the definitions, not of the sample size (status `low_n`, tests/test_cli_reading.py)."""
    settings = settings or KpiSettings()
    return settings if "min_n" in settings.model_fields_set else settings.model_copy(update={"min_n": 1})


def row(store: Store, kpi: str, settings: KpiSettings | None = None, segment: dict[str, Any] | None = None,
        **kw: Any) -> dict[str, Any]:
    """The one row of `kpi` for the segment (default: unsegmented) of the (only) period asked for."""
    found = [r for r in rows(store, settings, kpis=[kpi], **kw) if r["segment"] == (segment or {})]
    assert len(found) == 1, f"{kpi} {segment}: {found}"
    return found[0]


def value(store: Store, kpi: str, settings: KpiSettings | None = None, segment: dict[str, Any] | None = None,
          **kw: Any) -> Any:
    return row(store, kpi, settings, segment, **kw)["value"]
