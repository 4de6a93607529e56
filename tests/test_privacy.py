"""Privacy by default, over real HTTP against the sandbox into a real SQLite file: what reaches the
store's bytes, the [privacy] switches, erasure of one person, the retention purge, file modes."""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import stat
import subprocess
import threading
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import ValidationError

from connectors.base import PersonalKeys, SyncError
from connectors.freshdesk import normalize as freshdesk
from connectors.freshdesk.fake import served_messages
from connectors.http import HttpClient
from connectors.intercom import normalize as intercom
from connectors.intercom.fake import contact_ref
from connectors.sandbox import Sandbox
from connectors.sandbox.world import World
from connectors.zendesk import normalize as zendesk
from connectors.zendesk.settings import ZendeskSettings
from kpi_core.cli import main
from kpi_core.kpis.api import compute
from kpi_core.model import email_hash
from kpi_core.privacy import PERSON_TABLES
from kpi_core.settings import Settings, load_settings
from kpi_core.store import Store, open_store
from kpi_core.sync import sync_all

HASH_KEY = "privacy-test-key"
ALL_ON = """store_names = true
store_emails = true
store_phones = true
store_message_bodies = true
store_survey_comments = true
"""
# Computing fewer period grains and segmentations keeps the test quick; the rules are the same.
KPIS = '[kpis]\nperiods = ["week", "month"]\nsegments = [[], ["source"]]\n'
SETTLED = "period_end <= date('now', '-14 days')"  # periods no later compute redoes with time alone


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox.generate(seed=5, tickets=240)
    box.start()
    yield box
    box.stop()


@pytest.fixture
def hash_key(monkeypatch: pytest.MonkeyPatch) -> bytes:
    monkeypatch.setenv("HELPDESK_KPI_PRIVACY__HASH_KEY", HASH_KEY)
    return HASH_KEY.encode()


def write_config(tmp_path: Path, box: Sandbox, privacy: str = "") -> Path:
    path = tmp_path / "helpdesk-kpi.toml"
    path.write_text(box.config_toml(str(tmp_path / "kpi.sqlite")) + "\n" + KPIS + "\n[privacy]\n" + privacy)
    os.chmod(path, 0o600)
    return path


def synced(tmp_path: Path, box: Sandbox, privacy: str = "") -> tuple[Path, Settings, Store]:
    config = write_config(tmp_path, box, privacy)
    settings = load_settings(config)
    store = open_store(settings.store.path)
    results = sync_all(store, settings)
    assert [r.error for r in results if not r.ok] == []
    return config, settings, store


def store_bytes(store_path: Path) -> bytes:
    """The store as it lies on disk: the main file, its WAL and its shared-memory index."""
    parts = [Path(str(store_path) + suffix) for suffix in ("", "-wal", "-shm")]
    return b"".join(p.read_bytes() for p in parts if p.exists())


def rows(store: Store, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in store.db.execute(sql, params).fetchall()]


def kpi_values(store: Store, where: str = "1") -> list[tuple[Any, ...]]:
    return rows(store, "SELECT grain, by_key, period_start, period_end, kpi, segment, value, numerator, denominator, n"
                       f" FROM kpi_values WHERE {where} ORDER BY 1, 2, 3, 4, 5, 6")


FROZEN_VALUES = ("EXISTS (SELECT 1 FROM kpi_computed k WHERE k.frozen = 1 AND k.grain = kpi_values.grain"
                 " AND k.by_key = kpi_values.by_key AND k.period_start = kpi_values.period_start"
                 " AND k.period_end = kpi_values.period_end)")
ENDED = "period_end <= date('now')"


def periods(store: Store, where: str = "frozen = 1") -> set[tuple[Any, ...]]:
    return set(rows(store, f"SELECT grain, by_key, period_start, period_end FROM kpi_computed WHERE {where}"))


def without_moving(values: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Values but the two that gone contacts may still move in later periods: backlog and retention."""
    return [v for v in values if v[4] not in ("backlog", "customer_retention_pct")]


def today() -> str:
    return utc_today().isoformat()


def leaked(data: bytes, text: str) -> bool:
    """`text` in the bytes as UTF-8 or as JSON writes it (non-ASCII escaped, as the raw columns hold it)."""
    return text.encode() in data or json.dumps(text)[1:-1].encode() in data


def utc_today() -> date:
    return datetime.now(timezone.utc).date()


def has(data: bytes, text: str) -> bool:
    """`text` in the bytes, not followed by another digit (so id 12 does not match 123) unless the digits are
    the next column's timestamp (SQLite stores a row's values side by side)."""
    return re.search(re.escape(text.encode()) + rb"(?:(?!\d)|(?=\d{4}-[01]\d-[0-3]\dT))", data) is not None


# --- the per-source lists against the sandbox's payloads ------------------------------------------


def string_leaves(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from string_leaves(item, (*path, key))
    elif isinstance(value, list):
        for item in value:
            yield from string_leaves(item, path)
    elif isinstance(value, str):
        yield path, value


def personal_by_kind(world: World, source: str) -> dict[str, set[str]]:
    data = world.sources[source]
    tickets = list(data.tickets.values())
    return {
        "names": {p.name for p in data.people.values()},
        "emails": {p.email for p in data.people.values()},
        "phones": {p.phone for p in data.people.values() if p.phone},
        "bodies": {m.body for t in tickets for m in t.messages} | {t.subject for t in tickets},
        "comments": {t.rating.comment for t in tickets if t.rating and t.rating.comment},
    }


def payloads(box: Sandbox, source: str) -> Iterator[Any]:
    """What the fake serves for every record of `source`, rendered by its own helpers."""
    fake: Any = box[source]
    data = box.world.sources[source]
    answered = [t for t in data.tickets.values() if t.rating and t.rating.answered_at and t.rating.score is not None]
    if source == "zendesk":
        for t in data.tickets.values():
            yield fake.render_ticket(t, True)
            yield fake.render_audit(t.created_at, 1, t, (t.messages, t.status_changes), True)
            if t.rating:
                yield fake.render_rating(t)
        # Open-ended answers go by structure (the question type), not by key: check what is left.
        yield from (zendesk.survey_response_row(fake.render_survey_response(t))["raw"] for t in answered)
        yield from (fake.render_user(p) for p in data.people.values())
    elif source == "intercom":
        for t in data.tickets.values():
            yield {**fake.render_conversation(t), "conversation_parts": {"conversation_parts": fake.render_parts(t)}}
        yield from (fake.render_contact(p) for p in data.customers())
        token = fake.connector_settings()["access_token"]
        yield requests.get(fake.base_url + "/admins", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
    else:
        for t in data.tickets.values():
            yield fake.render_ticket(t, {"stats", "description", "requester", "company"})
            yield from (fake.render_conversation(t, m) for m in t.messages[1:])
        yield from (fake.render_rating(t) for t in answered)
        yield from (fake.render_agent(p) for p in data.people.values() if p.role != "customer")
        yield from (fake.render_contact(p) for p in data.customers())


@pytest.mark.parametrize("source, keys", [("zendesk", zendesk.PERSONAL), ("intercom", intercom.PERSONAL),
                                          ("freshdesk", freshdesk.PERSONAL)])
def test_every_personal_value_of_the_payloads_sits_under_a_listed_key(sandbox: Sandbox, source: str,
                                                                      keys: PersonalKeys) -> None:
    kinds = personal_by_kind(sandbox.world, source)
    checked = 0
    for payload in payloads(sandbox, source):
        for path, text in string_leaves(payload):
            for kind, values in kinds.items():
                if any(value in text for value in values):
                    allowed = getattr(keys, kind) | keys.always
                    assert allowed & set(path), f"{source}: {'.'.join(path)} holds {kind} but no listed key covers it"
                    checked += 1
    assert checked > 500


# --- what a sync stores ---------------------------------------------------------------------------


def test_defaults_leave_no_personal_data_in_the_store_files(sandbox: Sandbox, tmp_path: Path, hash_key: bytes) -> None:
    _config, settings, store = synced(tmp_path, sandbox)
    try:
        for suffix in ("", "-wal", "-shm"):
            mode = stat.S_IMODE(os.stat(str(settings.store.path) + suffix).st_mode)
            assert mode == 0o600, f"{suffix or 'store'}: mode {oct(mode)}"
        data = store_bytes(settings.store.path)
        world = sandbox.world
        personal = world.personal_strings() | {t.subject for d in world.sources.values() for t in d.tickets.values()}
        # Agents' display names are kept by default (`store_agent_names`, issue 16): only in people.name.
        staff = {p.name for d in world.sources.values() for p in d.people.values() if p.role != "customer"}
        personal -= staff
        assert len(personal) > 300
        assert any(not s.isascii() for s in personal)
        assert sorted(s for s in personal if leaked(data, s)) == []
        assert HASH_KEY.encode() not in data
        for column in ("people.name", "people.email", "people.phone", "messages.body", "survey_responses.comment"):
            table, name = column.split(".")
            customers = " AND role = 'customer'" if column == "people.name" else ""
            assert rows(store, f"SELECT count(*) FROM {table} WHERE {name} IS NOT NULL{customers}") == [(0,)], column
        # Pseudonymous people: the keyed hash of the address, the same in every helpdesk.
        zendesk_people = {p.id: p for p in world.sources["zendesk"].people.values()}
        hashes = dict(rows(store, "SELECT source_id, email_hash FROM people WHERE source = 'zendesk'"))
        assert hashes and all(hashes[i] == email_hash(zendesk_people[int(i)].email, hash_key) for i in hashes)
        stored = {h for (h,) in rows(store, "SELECT email_hash FROM people WHERE source = 'intercom'")}
        assert {email_hash(p.email, hash_key) for p in world.sources["intercom"].customers()} <= stored
    finally:
        store.close()


def test_switches_on_store_names_addresses_phones_bodies_and_comments(sandbox: Sandbox, tmp_path: Path) -> None:
    _, _, store = synced(tmp_path, sandbox, ALL_ON)
    world = sandbox.world
    try:
        for source, ident in (("zendesk", str), ("intercom", contact_ref), ("freshdesk", str)):
            people = world.sources[source].customers()
            stored = {r[0]: r[1:] for r in rows(store, "SELECT source_id, name, email, phone, raw FROM people"
                                                       " WHERE source = ?", source)}
            for p in people:
                name, address, phone, raw = stored[ident(p.id)]  # type: ignore[operator]
                assert (name, address, phone) == (p.name, p.email, p.phone), f"{source} {p.id}"
                kept = json.loads(raw)
                assert (kept["name"], kept["email"]) == (p.name, p.email), f"{source} {p.id}: raw keeps the keys"
            bodies = {b for (b,) in rows(store, "SELECT body FROM messages WHERE source = ?", source)}
            assert None not in bodies
            for t in world.sources[source].tickets.values():
                if t.deleted or t.spam:
                    continue
                for m in served_messages(t) if source == "freshdesk" else t.messages:
                    assert any(m.body in b for b in bodies), f"{source} ticket {t.id}: {m.body!r} not stored"
            comments = {c for (c,) in rows(store, "SELECT comment FROM survey_responses WHERE source = ?", source)}
            expected = {t.rating.comment for t in world.sources[source].tickets.values()
                        if t.rating and t.rating.comment and t.rating.answered_at}
            assert expected and expected <= comments, source
    finally:
        store.close()


# --- erasure ----------------------------------------------------------------------------------------


def test_forget_removes_every_trace_of_one_person_and_keeps_the_kpi_values(
        sandbox: Sandbox, tmp_path: Path, hash_key: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    config, settings, store = synced(tmp_path, sandbox)
    compute(store, settings)
    values = kpi_values(store)
    pid, tid = rows(store, "SELECT requester_id, min(source_id) FROM contacts WHERE source = 'zendesk'"
                           " GROUP BY requester_id ORDER BY count(*) DESC, requester_id LIMIT 1")[0]
    (other_tid,) = rows(store, "SELECT min(source_id) FROM contacts WHERE source = 'zendesk' AND requester_id != ?",
                        pid)[0]
    for record, obj in ((tid, "ticket"), (pid, "user"), (other_tid, "ticket")):
        store.db.execute("INSERT INTO writeback_ledger VALUES ('zendesk', ?, ?, 'field', 'f1', '3', '3', 'written',"
                         " NULL, 1, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 1)",
                         [obj, record])
        store.db.execute("INSERT INTO writeback_log (run_id, at, helpdesk, object, record_id, kind, target, value,"
                         " status) VALUES (1, '2026-01-01T00:00:00Z', 'zendesk', ?, ?, 'field', 'f1', '3', 'written')",
                         [obj, record])
    store.quarantine("zendesk", "tickets", f"ticket:{tid}", "a test entry")
    theirs = {r[0] for r in rows(store, "SELECT source_id FROM contacts WHERE source = 'zendesk' AND requester_id = ?",
                                 pid)}
    raws = [r[0] for r in rows(store, "SELECT raw FROM contacts WHERE source = 'zendesk' AND requester_id = ?", pid)]
    (their_hash,) = rows(store, "SELECT email_hash FROM people WHERE source = 'zendesk' AND source_id = ?", pid)[0]
    everyone = set(rows(store, "SELECT source, source_id FROM contacts"))
    traces = [their_hash, f'"requester_id":{pid}', f"zendesk:{pid}"]
    before = store_bytes(settings.store.path)
    assert [t for t in traces if not has(before, t)] == [] and any(r.encode() in before for r in raws)

    assert main(["forget", "--config", str(config), "--source", "zendesk", "--requester", pid]) == 0
    printed = capsys.readouterr().out
    assert f"forget zendesk {pid} (customer)" in printed
    assert re.search(rf"contacts\s+{len(theirs)}\n", printed) and re.search(r"writeback_ledger\s+2\n", printed)
    # The sandbox's shop knows them too (by their e-mail's keyed hash): their orders went with them.
    assert "A later sync brings back only what the shop, zendesk still holds" in printed

    after = store_bytes(settings.store.path)
    assert [t for t in traces if has(after, t)] == []
    assert [r for r in raws if r.encode() in after] == []
    assert set(rows(store, "SELECT source, source_id FROM contacts")) == everyone - {("zendesk", t) for t in theirs}
    assert rows(store, "SELECT object, record_id FROM writeback_ledger") == [("ticket", other_tid)]
    assert rows(store, "SELECT count(*) FROM quarantine") == [(0,)]
    # The aggregates of the ended periods they fall in stay as they were, now and after any compute (their
    # contacts leave only the backlog of later periods and the base of the next period's retention).
    frozen = FROZEN_VALUES
    assert kpi_values(store, frozen) and kpi_values(store, frozen) == [v for v in values if v[:4] in periods(store)]
    assert without_moving(kpi_values(store, ENDED)) == without_moving([v for v in values if v[3] <= today()])
    compute(store, settings, full=True)
    assert kpi_values(store, frozen) == [v for v in values if v[:4] in periods(store)]

    # By address: matched by keyed hash across helpdesks (here an Intercom customer).
    customer = next(p for p in sandbox.world.sources["intercom"].customers()
                    if any(t.requester_id == p.id for t in sandbox.world.tickets("intercom")))
    ref = contact_ref(customer.id)
    assert rows(store, "SELECT count(*) FROM contacts WHERE source = 'intercom' AND requester_id = ?", ref)[0][0] > 0
    assert main(["forget", "--config", str(config), "--email", customer.email.upper()]) == 0
    assert f"forget intercom {ref} (customer)" in capsys.readouterr().out
    for table, column in (("contacts", "requester_id"), ("people", "source_id"), ("survey_responses", "requester_id")):
        assert rows(store, f"SELECT count(*) FROM {table} WHERE source = 'intercom' AND {column} = ?", ref) == [(0,)]
    assert not has(store_bytes(settings.store.path), email_hash(customer.email, hash_key))
    store.close()


def test_forget_by_address_needs_the_hash_key(sandbox: Sandbox, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, sandbox)
    assert main(["forget", "--config", str(config), "--email", "someone@example.org"]) == 2
    assert "hash_key" in capsys.readouterr().err
    assert main(["forget", "--config", str(config), "--requester", "12"]) == 2


def test_every_table_holding_a_person_is_known() -> None:
    store = open_store(":memory:")
    try:
        person_columns = {"requester_id", "author_id", "contact_id", "record_id", "requester"}
        tables = {name for (name,) in store.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        holding = {t for t in tables if person_columns & {c.name for c in store.db.table(t).columns}}
        assert holding and holding <= set(PERSON_TABLES), holding - set(PERSON_TABLES)
    finally:
        store.close()


# --- retention --------------------------------------------------------------------------------------


def test_purge_removes_what_is_past_retention_after_storing_its_kpi_values(
        sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, settings, store = synced(tmp_path, sandbox, "retention_days = 60\n")
    expired = "coalesce(last_activity_at, updated_at, created_at) < strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-60 days')"
    gone = set(rows(store, f"SELECT source, source_id FROM contacts WHERE {expired}"))
    raws = [r[0] for r in rows(store, f"SELECT raw FROM contacts WHERE {expired} AND raw IS NOT NULL")]
    created = [c for (c,) in rows(store, "SELECT created_at FROM contacts WHERE status != 'deleted'")]
    requesters = set(rows(store, "SELECT source, requester_id FROM contacts WHERE requester_id IS NOT NULL"
                                 " GROUP BY 1, 2 HAVING max(coalesce(last_activity_at, updated_at, created_at))"
                                 " < strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-60 days')"))
    assert len(gone) > 50 and len(gone) < len(created)

    values_before = rows(store, "SELECT count(*) FROM kpi_values")
    assert main(["purge", "--dry-run", "--config", str(config)]) == 0
    assert f"would delete {len(gone):,} contacts" in capsys.readouterr().out
    assert rows(store, f"SELECT count(*) FROM contacts WHERE {expired}") == [(len(gone),)]  # a dry run changes nothing
    assert rows(store, "SELECT count(*) FROM kpi_values") == values_before

    assert main(["purge", "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    assert re.search(rf"contacts\s+{len(gone)}\n", printed) and "retention 60 days" in printed

    assert rows(store, f"SELECT count(*) FROM contacts WHERE {expired}") == [(0,)]
    for table in ("messages", "status_events", "survey_responses", "kpi_facts"):
        column = "source_id" if table == "kpi_facts" else "contact_id"
        left = {r for r in rows(store, f"SELECT source, {column} FROM {table}")} & gone
        assert left == set(), f"{table} keeps records of purged contacts"
    assert requesters and set(rows(store, "SELECT source, source_id FROM people")) & requesters == set()
    data = store_bytes(settings.store.path)
    assert [r for r in raws if r.encode() in data] == []
    # The weekly volumes of the purged weeks were computed (and stored) before the contacts went.
    cutoff = (utc_today() - timedelta(days=60)).isoformat()
    weeks = rows(store, "SELECT period_start, period_end, value FROM kpi_values WHERE grain = 'week' AND by_key = ''"
                        " AND kpi = 'ticket_volume' AND period_end <= ?", cutoff)
    assert len(weeks) >= 6
    for start, end, value in weeks:
        assert value == sum(1 for c in created if start <= c[:10] < end), f"week of {start}"
    values = kpi_values(store, SETTLED)
    compute(store, settings)  # also adds the empty months of its default range: compare the periods there before
    periods = {v[:4] for v in values}
    assert [v for v in kpi_values(store, SETTLED) if v[:4] in periods] == values
    store.close()


# --- files and configuration ------------------------------------------------------------------------


def test_a_config_with_a_secret_readable_by_others_draws_a_warning(sandbox: Sandbox, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, sandbox)  # the sandbox's config holds its API tokens
    assert main(["check-config", "--config", str(config)]) == 0
    assert "readable by other users" not in capsys.readouterr().err
    os.chmod(config, 0o644)
    assert main(["check-config", "--config", str(config)]) == 0
    assert f"warning: {config}: holds a secret and is readable by other users" in capsys.readouterr().err
    secretless = tmp_path / "hash.toml"
    secretless.write_text(f'[privacy]\nhash_key = "{HASH_KEY}"\n')
    os.chmod(secretless, 0o604)
    assert main(["check-config", "--config", str(secretless)]) == 0
    captured = capsys.readouterr()
    assert "readable by other users" in captured.err and HASH_KEY not in captured.out + captured.err


def test_https_certificates_are_checked_and_plain_http_is_for_loopback_only(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)

    class Ok(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = HttpClient("zendesk", f"https://127.0.0.1:{server.server_address[1]}", max_attempts=1)
    try:
        assert client.session.verify is True
        with pytest.raises(SyncError, match="TLS handshake failed"):  # a certificate no authority signed
            client.get("/api/v2/groups")
    finally:
        client.close()
        server.shutdown()
        server.server_close()
    with pytest.raises(ValidationError, match="plain http is allowed only for a loopback address"):
        ZendeskSettings(base_url="http://helpdesk.example.com", oauth_token="t")
    assert ZendeskSettings(base_url="http://127.0.0.1:8080", oauth_token="t").base_url == "http://127.0.0.1:8080"
