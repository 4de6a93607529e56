"""The connector contract, once, for every registered connector that ships a sandbox fake.

Each test runs against the connector's own fake over real HTTP on loopback, into a real store
(a SQLite file, then a PostgreSQL account: `any_store`), through the one sync path
(`kpi_core.sync`). Nothing here names a vendor: the
connector, its settings model and its fake come from the registry, the expected values from
the sandbox's world. What is true of one vendor only stays in its own test module.
"""

from __future__ import annotations

import copy
import json
import logging
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from waiting import kill_once

from connectors import registry
from connectors.base import Connector
from connectors.sandbox import Sandbox
from connectors.sandbox.server import FakeApi, FakeRequest, FakeResponse
from connectors.sandbox.world import Ticket
from kpi_core.model import RECORD_TYPES, iso_utc
from kpi_core.settings import PrivacySettings
from kpi_core.store import Store, store_at
from kpi_core.sync import SourceResult, rewind_source, sync_source

SEED = 13
TICKETS = 60  # the world's total, shared among the helpdesks: a dozen to thirty tickets each
RECORD_TABLES = tuple(sorted(RECORD_TYPES))
# The helpdesks only: an order source (`helpdesk=False`, Shopify) has contract tests of its own over its
# fake (tests/test_shopify_connector.py), since these speak of tickets, people and surveys.
FAKED = [name for name, p in registry.plugins().items() if p.fake is not None and p.helpdesk]

# Known bugs being fixed elsewhere, as {(test, connector): reason}; each turns into a
# non-strict xfail of that one parameter.
KNOWN: dict[tuple[str, str], str] = {}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "name" in metafunc.fixturenames:
        test = metafunc.function.__name__
        metafunc.parametrize("name", [
            pytest.param(n, marks=pytest.mark.xfail(strict=False, reason=KNOWN[(test, n)])) if (test, n) in KNOWN else n
            for n in FAKED])


# --- the sandbox, the connector and the store ------------------------------------------------------


@pytest.fixture
def store(any_store: Store) -> Store:
    """Every contract holds on both stores: SQLite and PostgreSQL (tests/conftest.py `any_store`)."""
    return any_store


@pytest.fixture
def fake(name: str, make_sandbox: Callable[..., Sandbox]) -> FakeApi:
    return make_sandbox(seed=SEED, tickets=TICKETS, names=(name,))[name]


def settings(name: str, fake: FakeApi, **overrides: Any) -> Any:
    plugin = registry.plugin(name)
    return plugin.settings(**{**fake.connector_settings(), **overrides})  # type: ignore[attr-defined]


def connector(name: str, fake: FakeApi, **overrides: Any) -> Connector:
    return registry.build_connector(name, settings(name, fake, **overrides))


def sync(store: Store, name: str, fake: FakeApi, **overrides: Any) -> SourceResult:
    built = connector(name, fake, **overrides)
    try:
        return sync_source(store, built)
    finally:
        built.close()


def secret_keys(name: str, fake: FakeApi) -> list[str]:
    """The settings keys holding a secret (SecretStr) that the fake's settings fill."""
    fields = registry.plugin(name).settings.model_fields
    return [k for k in fake.connector_settings() if k in fields and "SecretStr" in str(fields[k].annotation)]


def tickets(fake: FakeApi, name: str) -> list[Ticket]:
    return list(fake.world.sources[name].tickets.values())


def live(fake: FakeApi, name: str) -> list[Ticket]:
    return [t for t in tickets(fake, name) if not t.deleted and not t.spam]


def ids(store: Store, table: str, where: str = "1") -> set[str]:
    return {r[0] for r in store.db.execute(f"SELECT source_id FROM [{table}] WHERE {where}")}


def dump(db: sqlite3.Connection | Store) -> dict[str, list[tuple[Any, ...]]]:
    execute = db.db.execute if isinstance(db, Store) else db.execute
    return {t: [tuple(r) for r in execute(f"SELECT * FROM [{t}] ORDER BY source, source_id")] for t in RECORD_TABLES}


def rewrite_responses(fake: FakeApi, change: Callable[[Any], None]) -> None:
    """Let `change` edit (a copy of) every JSON body the fake answers with."""
    answer = fake.dispatch

    def dispatch(request: FakeRequest) -> tuple[FakeResponse, bool]:
        response, cut = answer(request)
        if not isinstance(response.body, bytes) and response.status == 200:
            response.body = copy.deepcopy(response.body)
            change(response.body)
        return response, cut

    fake.dispatch = dispatch  # type: ignore[method-assign]


def objects(body: Any) -> Any:
    """Every JSON object in `body`, at any depth."""
    if isinstance(body, dict):
        yield body
        for value in body.values():
            yield from objects(value)
    elif isinstance(body, list):
        for item in body:
            yield from objects(item)


# --- incremental ------------------------------------------------------------------------------------


def test_a_second_sync_reads_only_the_changes_and_duplicates_nothing(name: str, fake: FakeApi, store: Store,
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    first = sync(store, name, fake)
    assert first.ok, first.error
    world = fake.world
    changed = {str(i) for i in set(world.mutate(name, 4)) | set(world.add_tickets(name, 2))}
    read: list[str] = []
    write_pages = store.write_pages

    def recording(source: str, stream: str, pages: Any, **kw: Any) -> int:
        read.extend(row["source_id"] for records, _ in pages for row in records.get("contacts", []))
        return write_pages(source, stream, pages, **kw)

    monkeypatch.setattr(store, "write_pages", recording)
    fake.clear_log()
    second = sync(store, name, fake)

    assert second.ok, second.error
    assert changed <= set(read)
    assert len(set(read) - changed) <= 1, "only the changes (and at most the bookmark's own record) are read"
    assert second.records < first.records
    for t in tickets(fake, name):
        if str(t.id) in changed:
            [(updated,)] = store.db.execute("SELECT updated_at FROM contacts WHERE source = ? AND source_id = ?",
                                            [name, str(t.id)]).fetchall()
            assert updated == iso_utc(t.updated_at), t.id
    # The same records as one full read of the changed world: none missing, none twice under another id.
    with store_at(tmp_path / "fresh.sqlite") as fresh:
        assert sync(fresh, name, fake).ok
        assert {t: ids(store, t) for t in RECORD_TABLES} == {t: ids(fresh, t) for t in RECORD_TABLES}
    read.clear()
    assert sync(store, name, fake).ok
    assert len(set(read)) <= 1, "nothing changed: nothing (but at most the bookmark's own record) is read again"


# --- crash and resume --------------------------------------------------------------------------------

KILLABLE_SYNC = """
import json, sys
import kpi_core.sync
from connectors import registry
from kpi_core.store import open_store
name, settings, path = sys.argv[1:4]
kpi_core.sync.BATCH_RECORDS = 1  # a transaction per page: the kill lands between stored pages
connector = registry.build_connector(name, registry.plugin(name).settings(**json.loads(settings)))
kpi_core.sync.sync_source(open_store(path), connector)
"""


def stored_contacts(path: Path) -> int:
    try:
        with sqlite3.connect(path, timeout=1) as db:
            return int(db.execute("SELECT count(*) FROM contacts").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # not created yet, or mid-migration


@pytest.mark.slow
def test_a_sync_killed_mid_way_resumes_to_the_same_rows(name: str, fake: FakeApi, tmp_path: Path) -> None:
    page_size = 4
    reference = tmp_path / "reference.sqlite"
    with store_at(reference) as ref:
        uninterrupted = sync(ref, name, fake, page_size=page_size)
        assert uninterrupted.ok, uninterrupted.error
    total = len(ids_at(reference, "contacts"))
    killed = tmp_path / "killed.sqlite"
    fake.slow(0.03, times=100_000)  # pace the pages so that the kill lands inside the contacts
    config = json.dumps({**fake.connector_settings(), "page_size": page_size}, default=str)
    child = subprocess.Popen([sys.executable, "-c", KILLABLE_SYNC, name, config, str(killed)])
    kill_once(child, lambda: stored_contacts(killed))
    fake.faults.clear()
    with store_at(killed) as store:
        assert [r[0] for r in store.db.execute("SELECT status FROM sync_runs")] == ["running"]
        assert 0 < store.count("contacts") < total, "killed mid-way through the contacts"
        resumed = sync(store, name, fake, page_size=page_size)
        assert resumed.ok, resumed.error
        assert resumed.api_calls < uninterrupted.api_calls, "the resumed sync carries on from its bookmarks"
    with sqlite3.connect(killed) as got, sqlite3.connect(reference) as want:
        assert dump(got) == dump(want)


def ids_at(path: Path, table: str) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute(f"SELECT source_id FROM [{table}]")}


# --- the source's signals ------------------------------------------------------------------------------


def test_throttling_is_waited_out_as_the_source_asks(name: str, fake: FakeApi, store: Store, no_sleep: Any) -> None:
    # The vendor's own throttle signal (Retry-After, or a reset time), asking for 30 seconds.
    fake.fail(429, skip=3, headers=fake.throttle_headers(30))
    result = sync(store, name, fake)
    assert result.ok, result.error
    calls = fake.calls()
    [throttled] = [i for i, c in enumerate(calls) if c.status == 429]
    asked = (calls[throttled].path, calls[throttled].query)
    retry = next(c for c in calls[throttled + 1:] if (c.path, c.query) == asked)
    assert retry.status == 200
    assert any(28 <= wait <= 31 for wait in no_sleep.waits), no_sleep.waits
    assert {str(t.id) for t in live(fake, name)} <= ids(store, "contacts")
    assert store.count("quarantine") == 0


def test_rejected_credentials_are_tried_once_and_fail_the_sync_clearly(name: str, fake: FakeApi, store: Store) -> None:
    keys = secret_keys(name, fake)
    assert keys, "the fake's settings carry a credential"
    result = sync(store, name, fake, **{k: "wrong-secret" for k in keys})
    assert not result.ok
    [call] = fake.calls()
    assert call.status == 401
    assert "401" in (result.error or "") and call.path in (result.error or "")
    assert "wrong-secret" not in (result.error or "")
    run = store.last_run(name)
    assert run is not None and run.status == "failed" and run.error == result.error


def _set_created_at(value: Any) -> Callable[[dict[str, Any]], None]:
    def corrupt(record: dict[str, Any]) -> None:
        record["created_at"] = copy.deepcopy(value)
    return corrupt


# Ways a vendor's record can break what its connector expects (each must end in quarantine, not abort).
CORRUPTIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "a bad value": _set_created_at("last tuesday"),
    "a wrong type": _set_created_at({"not": "a time"}),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_malformed_record_is_quarantined_and_the_sync_completes(name: str, fake: FakeApi, store: Store,
                                                                  corruption: str) -> None:
    victim = min(live(fake, name), key=lambda t: t.id)

    def corrupt(body: Any) -> None:
        for obj in objects(body):
            if str(obj.get("id")) == str(victim.id) and "created_at" in obj:
                CORRUPTIONS[corruption](obj)

    rewrite_responses(fake, corrupt)
    result = sync(store, name, fake)
    assert result.ok, result.error
    quarantined = [(r[0], r[1]) for r in store.db.execute("SELECT record_id, error FROM quarantine WHERE source = ?",
                                                          [name])]
    assert [rid for rid, _ in quarantined if str(victim.id) in rid], quarantined
    assert all(error for _, error in quarantined)
    stored = ids(store, "contacts")
    assert str(victim.id) not in stored
    assert {str(t.id) for t in live(fake, name) if t is not victim} <= stored


# --- privacy -----------------------------------------------------------------------------------------


def personal_values(fake: FakeApi, name: str) -> set[str]:
    data = fake.world.sources[name]
    values = {v for p in data.people.values() for v in (p.name, p.email, p.phone) if v}
    for t in data.tickets.values():
        values |= {m.body for m in t.messages} | {t.subject}
        if t.rating and t.rating.comment:
            values.add(t.rating.comment)
    return values


def leaked(data: bytes, text: str) -> bool:
    """`text` in the bytes as UTF-8 or as JSON writes it (non-ASCII escaped, as raw columns hold it)."""
    return text.encode() in data or json.dumps(text)[1:-1].encode() in data


def test_nothing_personal_or_secret_is_stored_or_logged_by_default(name: str, fake: FakeApi, tmp_path: Path,
                                                                   no_sleep: Any,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake.fail(429, skip=2, headers=fake.throttle_headers(1))  # a retry, logged
    path = tmp_path / "private.sqlite"
    with store_at(path) as store:
        result = sync(store, name, fake)
        assert result.ok, result.error
        assert store.db.execute("SELECT count(*) FROM people WHERE name IS NOT NULL OR email IS NOT NULL"
                                " OR phone IS NOT NULL OR email_hash IS NOT NULL").fetchone()[0] == 0
        assert store.db.execute("SELECT count(*) FROM messages WHERE body IS NOT NULL").fetchone()[0] == 0
        assert store.db.execute("SELECT count(*) FROM survey_responses WHERE comment IS NOT NULL").fetchone()[0] == 0
        assert store.count("messages") > 0
        data = b"".join(p.read_bytes() for p in tmp_path.glob("private.sqlite*"))
    personal = personal_values(fake, name)
    assert len(personal) > 50
    assert sorted(s for s in personal if leaked(data, s)) == []
    secrets = [str(fake.connector_settings()[k]) for k in secret_keys(name, fake)]
    assert secrets and not [s for s in secrets if leaked(data, s) or s in caplog.text]
    assert no_sleep.waits and "retry" in caplog.text


@pytest.mark.parametrize("agent_names", [True, False], ids=["agent-names-on", "agent-names-off"])
def test_agents_names_follow_their_own_switch_and_customers_stay_nameless(name: str, fake: FakeApi, store: Store,
                                                                         agent_names: bool) -> None:
    """`[privacy] store_agent_names` (issue 16): agents' and bots' display names in people.name; customers'
    names only with `store_names`, which stays off here."""
    section = settings(name, fake)
    section.with_privacy(PrivacySettings(store_agent_names=agent_names))
    built = registry.build_connector(name, section)
    try:
        assert sync_source(store, built).ok
    finally:
        built.close()
    staff = {str(p.id): p.name for p in fake.world.sources[name].people.values() if p.role != "customer"}
    stored = dict(store.db.execute("SELECT source_id, name FROM people WHERE role IN ('agent', 'bot')").fetchall())
    assert stored and set(stored) <= set(staff)
    assert stored == ({i: staff[i] for i in stored} if agent_names else dict.fromkeys(stored))
    assert store.db.execute("SELECT count(*) FROM people WHERE role = 'customer' AND name IS NOT NULL"
                            " OR email IS NOT NULL OR phone IS NOT NULL").fetchone()[0] == 0


# --- reconciliation ----------------------------------------------------------------------------------


def test_rewinding_brings_back_a_recent_row_lost_from_the_store(name: str, fake: FakeApi, store: Store) -> None:
    if getattr(registry.plugin(name).connector, "rewind_cursor", None) is None:
        pytest.skip(f"{name} cannot re-read a window (no rewind_cursor)")
    assert sync(store, name, fake).ok
    recent = sorted(live(fake, name), key=lambda t: (t.updated_at, t.id))
    lost = recent[-4]  # recent, yet not the record a bookmark may sit on

    def drop() -> None:
        with store.db.conn:
            store.db.execute("DELETE FROM contacts WHERE source = ? AND source_id = ?", [name, str(lost.id)])

    drop()
    assert sync(store, name, fake).ok
    assert str(lost.id) not in ids(store, "contacts"), "a plain incremental sync does not re-read it"
    built = connector(name, fake)
    try:
        moved = rewind_source(store, built, datetime.fromtimestamp(lost.updated_at, tz=timezone.utc))
        assert moved
        result = sync_source(store, built)
    finally:
        built.close()
    assert result.ok, result.error
    [(updated,)] = store.db.execute("SELECT updated_at FROM contacts WHERE source = ? AND source_id = ?",
                                    [name, str(lost.id)]).fetchall()
    assert updated == iso_utc(lost.updated_at)
    assert {str(t.id) for t in live(fake, name)} <= ids(store, "contacts")


# --- group, priority and assignee changes --------------------------------------------------------------


def test_every_connector_that_reads_changes_stores_the_worlds_changes(name: str, fake: FakeApi, store: Store) -> None:
    built = connector(name, fake)
    try:
        reads = any("contact_changes" in s.tables for s in built.streams())
    finally:
        built.close()
    if not reads:
        pytest.skip(f"{name} reads no group, priority or assignee changes")
    assert sync(store, name, fake).ok
    moves = {(str(t.id), c.field, str(c.value), str(c.previous), iso_utc(c.at))
             for t in live(fake, name) for c in t.moves() if c.field in fake.change_fields}
    assert moves, "the world moved some of these tickets"
    stored = {tuple(r) for r in store.db.execute("SELECT contact_id, field, value, previous, at FROM contact_changes"
                                                 " WHERE source = ? AND previous IS NOT NULL", [name])}
    assert stored == moves
    fields = {f for (f,) in store.db.execute("SELECT DISTINCT field FROM contact_changes WHERE source = ?", [name])}
    assert fields <= {"group", "priority", "assignee"}
