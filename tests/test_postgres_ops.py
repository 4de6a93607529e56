"""The store's other readers and writers on a PostgreSQL store (tests/pg_server.py), against the same on SQLite.

Each operation runs through the command line (in process) once with a SQLite store and once with a
PostgreSQL account, on the same input; what each prints and the rows each stores must be the same:
the event log, survey and order imports, the alert record and its deliveries to a loopback receiver,
erasure (`forget`, `purge`) and write-back.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from loopback_sinks import http_receiver

from connectors.sandbox import Sandbox
from kpi_core import privacy
from kpi_core.alerts.run import run_alerts
from kpi_core.cli import main
from kpi_core.kpis import api as kpi_api
from kpi_core.model import Channel
from kpi_core.settings import load_settings
from kpi_core.store import open_store

pytestmark = [pytest.mark.sandbox(seed=11, tickets=25, names=("zendesk",)),
              pytest.mark.usefixtures("restore_logging")]

ACCOUNT = "brand-w"
KEY = "ops-test-key"
# Columns holding the moment of the run, or a row's number, rather than what the operation stored.
RUN_TIME = {"rowid", "created_at", "updated_at", "seen_at", "decided_at", "since"}


@dataclass
class Pair:
    """The same configuration twice: a SQLite store, and a PostgreSQL account."""

    lite: Path
    server: Path
    url: str

    def configs(self) -> tuple[Path, Path]:
        return self.lite, self.server

    def rows(self, table: str, order: str, skip: set[str] = RUN_TIME) -> tuple[list[tuple[Any, ...]], ...]:
        """The table's rows on each store, without the columns in `skip`."""
        lite = sqlite3.connect(self.lite.parent / "store.sqlite")
        try:
            columns = [r[1] for r in lite.execute(f"PRAGMA table_info([{table}])") if r[1] not in skip]
            listed = ", ".join(columns)
            on_lite = [tuple(r) for r in lite.execute(f"SELECT {listed} FROM {table} ORDER BY {order}")]
        finally:
            lite.close()
        with psycopg.connect(self.url) as server:
            server.execute(f'SET search_path TO "{ACCOUNT.replace("-", "_")}"')
            on_server = [tuple(r) for r in server.execute(f"SELECT {listed} FROM {table} ORDER BY {order}")]
        return on_lite, on_server


@pytest.fixture
def pair(module_sandbox: Sandbox, config_for: Callable[..., Path], pg_url: str) -> Callable[..., Pair]:
    """`pair(extra_toml)`: a config for the module's sandbox on SQLite, and the same on a PostgreSQL account."""

    def make(extra: str = "") -> Pair:
        lite = config_for(module_sandbox, f'[privacy]\nhash_key = "{KEY}"\n{extra}')
        text = lite.read_text().replace("[store]\n", f'[store]\nurl = "{pg_url}"\naccount = "{ACCOUNT}"\n', 1)
        server = lite.with_name("server.toml")
        server.write_text(text)
        server.chmod(0o600)
        return Pair(lite, server, pg_url)

    return make


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def on_both(capsys: pytest.CaptureFixture[str], pair: Pair, *argv: str) -> tuple[int, str, str]:
    """Run `argv` on both stores; what they print must be the same. Returns it."""
    lite = cli(capsys, *argv, "--config", str(pair.lite))
    server = cli(capsys, *argv, "--config", str(pair.server))
    assert server == lite, argv
    return lite


def test_the_event_log_adds_lists_imports_and_removes_alike(pair: Callable[..., Pair], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    stores = pair()
    csv_file = tmp_path / "events.csv"
    csv_file.write_text("starts,ends,title,segment\n2026-12-01,,Outage EU,\n"
                        "2026-12-02,2026-12-03,Launch of the app,channel=chat\n")
    code, out, _ = on_both(capsys, stores, "events", "add", "--at", "2026-11-27", "--until", "2026-11-30",
                           "--title", "Black Friday sale", "--segment", "market=de")
    assert code == 0 and out.startswith("event 1 added")
    assert "is in the log already" in on_both(capsys, stores, "events", "add", "--at", "2026-11-27", "--until",
                                              "2026-11-30", "--title", "Black Friday sale", "--segment",
                                              "market=de")[1]
    assert "2 events read, 2 new" in on_both(capsys, stores, "events", "import", str(csv_file))[1]
    assert "2 events read, 0 new" in on_both(capsys, stores, "events", "import", str(csv_file))[1]
    # An id is not spent on an event already in the log: the next one is numbered as on SQLite.
    assert "event 4 added" in on_both(capsys, stores, "events", "add", "--at", "2026-12-24", "--title", "Eve")[1]
    assert on_both(capsys, stores, "events", "remove", "2")[0] == 0
    code, out, _ = cli(capsys, "events", "list", "--format", "json", "--config", str(stores.lite))
    assert code == 0
    listed = json.loads(out)
    server = json.loads(cli(capsys, "events", "list", "--format", "json", "--config", str(stores.server))[1])
    assert [{k: v for k, v in e.items() if k != "created_at"} for e in server] == [
        {k: v for k, v in e.items() if k != "created_at"} for e in listed]
    assert [e["id"] for e in listed] == [1, 3, 4]
    lite_rows, server_rows = stores.rows("events", "id")
    assert server_rows == lite_rows and len(lite_rows) == 3


def test_survey_mappings_and_imports_and_order_imports_store_the_same_rows(
        module_sandbox: Sandbox, pair: Callable[..., Pair], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    world = module_sandbox.world
    with world.lock:  # an NPS tool wrote its score into a ticket field; one answer is not a number
        answered = list(world.tickets("zendesk"))[:4]
        for ticket, score in zip(answered, (9, 7.5, 3, "ten"), strict=True):
            ticket.custom[360001] = score
        for ticket, satisfied in zip(answered, (True, False), strict=False):  # a checkbox: true reads as 1
            ticket.custom[360002] = satisfied
    stores = pair('[[surveys.mappings]]\nkind = "nps"\nscale = "0-10"\nhelpdesk = "zendesk"\n'
                  'location = "ticket_field"\nfield = "360001"\n'
                  '[[surveys.mappings]]\nkind = "csat"\nscale = "good_bad"\nhelpdesk = "zendesk"\n'
                  'location = "ticket_field"\nfield = "360002"\n')
    assert on_both(capsys, stores, "sync")[0] == 0
    lite, server = stores.rows("survey_responses", "source, source_id")
    assert server == lite and sorted(r[3] for r in lite if r[2] == "nps") == [3.0, 7.5, 9.0]
    assert sorted(r[3] for r in lite if r[1].startswith("csat:ticket_field:360002:")) == [0.0, 1.0]
    lite, server = stores.rows("quarantine", "source, stream, record_id")
    assert server == lite and "score 'ten' is not a number" in {r[3] for r in lite if r[1] == "surveys:360001"}

    customers = list(world.sources["zendesk"].customers())[:2]
    answers = tmp_path / "nps.csv"
    answers.write_text(f"id,score,responded_at,email\nr1,10,2026-03-01T10:00:00Z,{customers[0].email.upper()}\n"
                       "r2,6,2026-03-02,someone@else.example\nr3,11,2026-03-03,\n")
    code, out, err = on_both(capsys, stores, "surveys", "import", str(answers), "--kind", "nps", "--scale", "0-10")
    assert code == 1 and "2 of 3 nps answers stored" in out and "outside the 0-10 scale" in err
    lite, server = stores.rows("survey_responses", "source, source_id")
    assert server == lite and sum(r[2] == "nps" for r in lite) == 5

    export = tmp_path / "orders.csv"
    export.write_text("Name,Email,Financial Status,Currency,Total,Created at,Refunded Amount,Lineitem quantity,Id\n"
                      f"#1001,{customers[0].email},paid,EUR,59.80,2026-03-01 10:15:00 +0100,,2,5001\n"
                      f"#1002,{customers[1].email},refunded,EUR,49.00,2026-03-02 09:00:00 +0000,49.00,1,5002\n")
    code, out, _ = on_both(capsys, stores, "orders", "import", str(export))
    assert code == 0 and "2 orders stored from 2 rows" in out
    assert on_both(capsys, stores, "orders", "import", str(export))[0] == 0  # again: no duplicate
    lite, server = stores.rows("orders", "source, source_id")
    assert server == lite and len(lite) == 2


def test_alerts_are_decided_recorded_and_delivered_alike(module_sandbox: Sandbox, pair: Callable[..., Pair],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    targets = "".join(f"[kpis.targets.channel.{c.value}]\nfirst_response_time_median = 10\n" for c in Channel)
    with http_receiver() as lite_hook, http_receiver() as server_hook:
        stores = pair(f'[alerts]\nenabled = true\nwebhooks = ["{lite_hook.url}/hook"]\nkpis = ["ticket_volume"]\n'
                      f'[kpis]\nmin_n = 1\n[kpis.targets]\nticket_volume = [0, 1]\n{targets}')
        stores.server.write_text(stores.server.read_text().replace(lite_hook.url, server_hook.url))
        settings = [load_settings(path) for path in stores.configs()]
        opened = [open_store(s.store.location, s.store.account) for s in settings]
        try:
            assert on_both(capsys, stores, "sync")[0] == 0
            t0 = datetime.now(timezone.utc).replace(microsecond=0)
            for store, config in zip(opened, settings, strict=True):
                assert run_alerts(store, config, now=t0).ok  # the backlog: one summary
            new = module_sandbox.world.add_tickets("zendesk", 2)
            assert on_both(capsys, stores, "sync")[0] == 0
            for store, config in zip(opened, settings, strict=True):
                kpi_api.compute(store, config, now=t0)  # today's ticket volume is past its target: a KPI alert
            for minutes in (8, 11):  # at risk (75 % of 10 minutes), then breached
                passes = [run_alerts(store, config, now=t0 + timedelta(minutes=minutes))
                          for store, config in zip(opened, settings, strict=True)]
                assert passes[1].decisions.counts == passes[0].decisions.counts and all(p.ok for p in passes)
        finally:
            for store in opened:
                store.close()
        assert server_hook.posts == lite_hook.posts
    mine = [b for _, b in lite_hook.posts if b.get("contact_id") in {str(i) for i in new}]
    assert sorted((b["contact_id"], b["stage"]) for b in mine) == sorted(
        (str(i), stage) for i in new for stage in ("at_risk", "breached"))
    assert lite_hook.posts[0][1]["kind"] == "summary"
    assert [(b["kpi"], b["period"]) for _, b in lite_hook.posts if b.get("kind") == "kpi"] == [("ticket_volume", "day")]
    lite, server = stores.rows("alert_events", "id")
    assert server == lite and len(lite) > 4
    lite, server = stores.rows("alert_deliveries", "event_id, sink")
    ports = (lite_hook.url.rsplit(":", 1)[1], server_hook.url.rsplit(":", 1)[1])  # a sink is named by its host
    assert [(r[0], r[1].replace(*ports[::-1]), *r[2:]) for r in server] == lite and {r[2] for r in lite} == {"sent"}
    listed = [cli(capsys, "alerts", "--format", "json", "--config", str(path))[1] for path in stores.configs()]
    sent = [json.loads(text.replace(*ports[::-1]))["sent"] for text in listed]
    for alerts in sent:  # when each delivery was made is the clock's
        for alert in alerts:
            alert["deliveries"] = [{k: v for k, v in d.items() if k != "updated_at"} for d in alert["deliveries"]]
    assert sent[1] == sent[0] and len(sent[0]) > 4


def counts(printed: str) -> dict[str, int]:
    """The rows deleted per table, as `forget` and `purge` print them ("  contacts   6"), and the total."""
    return {line.split()[0]: int(line.split()[1].replace(",", "")) for line in printed.splitlines()
            if line.startswith("  ")}


def besides_the_files(printed: str) -> list[str]:
    """What `forget` or `purge` printed, but the line on what became of the deleted rows' bytes (each store's own)."""
    return [line for line in printed.splitlines() if "WAL" not in line]


def filenodes(url: str, tables: list[str]) -> dict[str, int]:
    """Each table's file number: VACUUM FULL writes a table into a new file."""
    with psycopg.connect(url) as server:
        server.execute(f'SET search_path TO "{ACCOUNT.replace("-", "_")}"')
        return {t: server.execute("SELECT pg_relation_filenode(%s)", [t]).fetchone()[0] for t in tables}


def test_forget_and_purge_delete_the_same_rows_and_rewrite_the_tables(
        module_sandbox: Sandbox, pair: Callable[..., Pair], capsys: pytest.CaptureFixture[str]) -> None:
    stores = pair("retention_days = 60\n")  # in [privacy]
    assert on_both(capsys, stores, "sync")[0] == 0
    tickets = list(module_sandbox.world.tickets("zendesk"))
    first, second = tickets[0].requester_id, next(t.requester_id for t in tickets if t.requester_id != tickets[0]
                                                  .requester_id)
    address = next(p.email for p in module_sandbox.world.sources["zendesk"].customers() if p.id == second)
    tables = ["contacts", "messages", "people"]
    before = filenodes(stores.url, tables)

    printed = [cli(capsys, "forget", "--source", "zendesk", "--requester", str(first), "--config", str(path))
               for path in stores.configs()]
    assert [p[0] for p in printed] == [0, 0] and counts(printed[1][1]) == counts(printed[0][1])
    assert besides_the_files(printed[1][1]) == besides_the_files(printed[0][1])  # the frozen periods too
    assert "VACUUM FULL" in printed[1][1] and "WAL was emptied" in printed[0][1]
    assert f"forget zendesk {first} (customer)" in printed[1][1] and counts(printed[0][1])["kpi_facts"] > 0
    after = filenodes(stores.url, tables)
    assert all(after[t] != before[t] for t in tables)  # each written anew without the deleted rows

    printed = [cli(capsys, "forget", "--email", address.upper(), "--config", str(path)) for path in stores.configs()]
    assert [p[0] for p in printed] == [0, 0] and counts(printed[1][1]) == counts(printed[0][1])
    assert besides_the_files(printed[1][1]) == besides_the_files(printed[0][1])
    assert counts(printed[0][1])["contacts"] > 0
    code, _, said = on_both(capsys, stores, "forget", "--source", "zendesk", "--requester", str(first))
    assert code == 1 and "nothing deleted" in said  # gone from both

    assert on_both(capsys, stores, "purge", "--dry-run")[0] == 0
    printed = [cli(capsys, "purge", "--config", str(path)) for path in stores.configs()]
    assert [p[0] for p in printed] == [0, 0] and counts(printed[1][1]) == counts(printed[0][1])
    assert besides_the_files(printed[1][1])[1:] == besides_the_files(printed[0][1])[1:]  # [0]: the clock's cutoff
    assert counts(printed[0][1])["total"] > 0  # something was past retention
    for table, order in (("contacts", "source, source_id"), ("people", "source, source_id"),
                         ("messages", "source, source_id"), ("survey_responses", "source, source_id")):
        lite, server = stores.rows(table, order, RUN_TIME | {"raw"})
        assert server == lite, table


WRITEBACK = """[writeback]
enabled = true
max_writes_per_run = 1000

[[writeback.mappings]]
helpdesk = "zendesk"
object = "ticket"
metric = "first_response_minutes"
field = "kpi_frt"

[[writeback.mappings]]
helpdesk = "zendesk"
object = "ticket"
metric = "sla_met"
field = "kpi_sla_met"

[[writeback.mappings]]
helpdesk = "zendesk"
object = "user"
metric = "contacts_30d"
field = "kpi_contacts_30d"

[[writeback.notes]]
helpdesk = "zendesk"
rule = "sla_breached"
template = "Missed the first-reply target ({first_response_minutes} min)."
"""


def test_push_plans_writes_and_records_the_same_on_both_stores(module_sandbox: Sandbox, pair: Callable[..., Pair],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    stores = pair(WRITEBACK)
    fake = module_sandbox.fakes["zendesk"]
    assert cli(capsys, "fields", "--create", "--yes", "--config", str(stores.lite))[0] == 0
    assert on_both(capsys, stores, "sync")[0] == 0  # both read the fields before either writes
    code, plan, _ = on_both(capsys, stores, "push", "--dry-run")
    assert code == 0 and "changes planned" in plan and "kpi_contacts_30d" in plan
    written = []
    for path in stores.configs():
        fake.clear_log()
        assert cli(capsys, "push", "--config", str(path))[0] == 0
        written.append([(r.method, r.path, r.body) for r in fake.calls() if r.method in ("PUT", "POST", "PATCH")])
    assert written[1] == written[0] and len(written[0]) > 3
    for table, order in (("writeback_ledger", "helpdesk, object, record_id, kind, target"),
                         ("writeback_log", "id")):
        lite, server = stores.rows(table, order, RUN_TIME | {"first_attempt_at", "last_attempt_at", "written_at", "at"})
        assert server == lite and len(lite) > 3, table


def test_a_table_another_session_holds_is_named_and_the_others_are_rewritten(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(pg_url, ACCOUNT)
    try:
        deletion = privacy.Deletion()
        deletion.counts.update(contacts=2, people=1, alert_events=1)
        tables = ["contacts", "people", "alert_events", "alert_deliveries"]
        before = filenodes(pg_url, tables)
        monkeypatch.setattr(privacy, "REWRITE_LOCK_WAIT", "200ms")  # not the half minute a daemon's page is given
        with psycopg.connect(pg_url) as holder, holder.transaction():
            holder.execute(f'LOCK TABLE "{ACCOUNT.replace("-", "_")}".people IN ACCESS SHARE MODE')  # a long read
            assert privacy.checkpoint(store, deletion) is False
        assert deletion.busy == ["people"]
        after = filenodes(pg_url, tables)
        assert {t for t in tables if after[t] != before[t]} == {"contacts", "alert_events", "alert_deliveries"}
        assert store.db.execute("SHOW lock_timeout").fetchone()[0] == "0"  # the store's own wait is back
    finally:
        store.close()
