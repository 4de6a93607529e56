"""The PostgreSQL store (`[store] url`, kpi_core/postgres/) on a real server (tests/pg_server.py).

The sandbox's helpdesks are synced into a SQLite store and into a PostgreSQL account with the same
program; every stored row must be the same. Then what a server adds: accounts as schemas that never
see each other, one daemon per account, the password never shown.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from store_compare import assert_same_tables, server_config

from connectors.sandbox import Sandbox
from kpi_core.cli import main
from kpi_core.lock import AlreadyRunning
from kpi_core.postgres.lock import AccountLock
from kpi_core.store import StoreError, account_schema, open_store

pytestmark = pytest.mark.sandbox(seed=7, tickets=40)

def test_a_sync_stores_the_same_rows_on_both_stores(module_sandbox: Sandbox, config_for: Callable[..., Path],
                                                     tmp_path: Path, pg_url: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    lite_config = config_for(module_sandbox)
    assert main(["sync", "--config", str(lite_config)]) == 0
    assert main(["sync", "--config", str(server_config(lite_config, pg_url, "brand-a"))]) == 0
    compared = assert_same_tables(tmp_path / "store.sqlite", pg_url, "brand-a")
    with psycopg.connect(pg_url) as server:
        server.execute('SET search_path TO "brand_a"')
        contacts, replied = server.execute("SELECT count(*), count(first_agent_reply_at) FROM contacts").fetchone()
    # The derived facts are the store's own SQL, translated: compared above, and there to compare.
    assert contacts > 30 and replied > 10 and compared > 500
    capsys.readouterr()


def test_a_second_sync_adds_nothing_and_resumes_from_the_cursors(module_sandbox: Sandbox, pg_url: str,
                                                                   config_for: Callable[..., Path]) -> None:
    config = server_config(config_for(module_sandbox), pg_url, "brand-a")
    assert main(["sync", "--config", str(config)]) == 0
    store = open_store(pg_url, "brand-a")
    first = {t: store.count(t) for t in ("contacts", "messages", "status_events", "people")}
    cursors = store.cursors("zendesk")
    store.close()
    assert main(["sync", "--config", str(config)]) == 0
    store = open_store(pg_url, "brand-a")
    assert {t: store.count(t) for t in first} == first
    assert set(store.cursors("zendesk")) == set(cursors)
    runs = store.db.execute("SELECT source, status FROM sync_runs WHERE source = 'zendesk' ORDER BY id").fetchall()
    assert [tuple(r) for r in runs] == [("zendesk", "ok"), ("zendesk", "ok")]
    store.close()


def test_accounts_are_schemas_that_never_see_each_other(pg_url: str) -> None:
    one, other = open_store(pg_url, "brand-a"), open_store(pg_url, "brand-b")
    contact = {"source": "zendesk", "source_id": "1", "channel": "email", "status": "open",
               "created_at": "2026-03-02T09:00:00Z"}
    one.write_page("zendesk", "tickets", {"contacts": [contact]}, "cursor-a")
    assert (one.count("contacts"), other.count("contacts")) == (1, 0)
    assert (one.get_cursor("zendesk", "tickets"), other.get_cursor("zendesk", "tickets")) == ("cursor-a", None)
    # A page and its cursor are one transaction: a failing page moves no cursor.
    with pytest.raises(Exception, match="contact"):
        one.write_page("zendesk", "tickets", {"contacts": [{**contact, "source_id": "2", "created_at": None}]},
                       "cursor-b")
    assert (one.count("contacts"), one.get_cursor("zendesk", "tickets")) == (1, "cursor-a")
    one.close()
    other.close()


def test_one_daemon_per_account_and_the_lock_dies_with_its_session(pg_url: str) -> None:
    first = AccountLock(pg_url, account_schema("brand-a"))
    first.acquire()
    with pytest.raises(AlreadyRunning, match=r"already running on .*brand_a"):
        AccountLock(pg_url, account_schema("brand-a")).acquire()
    with AccountLock(pg_url, account_schema("brand-b")):  # another account's daemon is not held up
        pass
    first.release()  # as a killed daemon's session ending does
    with AccountLock(pg_url, account_schema("brand-a")):
        pass


def test_a_store_of_a_newer_version_is_refused(pg_url: str) -> None:
    open_store(pg_url, "brand-a").close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO brand_a._sqlite_migrations VALUES ('helpdesk_kpi', 'm999_future', 'now')")
    with pytest.raises(StoreError, match=r"newer helpdesk-kpi .*m999_future"):
        open_store(pg_url, "brand-a")


def test_the_password_is_never_shown(module_sandbox: Sandbox, config_for: Callable[..., Path], pg_url: str,
                                     capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # The throwaway cluster trusts its socket: a password is accepted and ignored, as a real server's would be read.
    monkeypatch.setenv("HELPDESK_KPI_STORE__PASSWORD", "s3cret-Pa55")
    config = server_config(config_for(module_sandbox), pg_url, "brand-a")
    assert main(["check-config", "--config", str(config)]) == 0
    assert main(["sync", "--config", str(config)]) == 0
    assert main(["status", "--config", str(config)]) == 0
    shown = capsys.readouterr()
    assert "brand-a" in shown.out and "s3cret" not in shown.out + shown.err
    broken = config.with_name("broken.toml")
    broken.write_text(config.read_text().replace("host=", "host=/nonexistent", 1))
    assert main(["status", "--config", str(broken)]) != 0
    shown = capsys.readouterr()
    assert "cannot connect to the PostgreSQL store" in shown.err and "s3cret" not in shown.out + shown.err


def test_a_password_in_the_url_is_refused(module_sandbox: Sandbox, config_for: Callable[..., Path],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    config = server_config(config_for(module_sandbox), "postgresql://kpi:s3cret@db.example/kpi", "brand-a")
    assert main(["check-config", "--config", str(config)]) == 2
    shown = capsys.readouterr().err
    assert "store.url" in shown and "HELPDESK_KPI_STORE__PASSWORD" in shown


def test_all_accounts_reads_every_account_side_by_side(pg_url: str) -> None:
    contact = {"source": "zendesk", "source_id": "1", "channel": "email", "status": "open",
               "created_at": "2026-03-02T09:00:00Z"}
    for account, ids in (("brand-a", ("1", "2")), ("brand-b", ("1",))):
        store = open_store(pg_url, account)  # a new account redefines the views
        store.write_page("zendesk", "tickets", {"contacts": [{**contact, "source_id": i} for i in ids]}, None)
        store.close()
    with psycopg.connect(pg_url) as bi:
        rows = bi.execute("SELECT account, source_id FROM all_accounts.contacts ORDER BY 1, 2").fetchall()
        assert rows == [("brand-a", "1"), ("brand-a", "2"), ("brand-b", "1")]
        columns = [r[0] for r in bi.execute("SELECT column_name FROM information_schema.columns WHERE"
                                            " table_schema = 'all_accounts' AND table_name = 'kpi_values'")]
        assert columns[:2] == ["account", "grain"] and "rowid" not in columns
