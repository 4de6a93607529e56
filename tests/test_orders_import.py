"""`helpdesk-kpi orders import`: a shop's CSV export into the real store, through the command line in-process:
the default and explicit column mappings, re-import without duplicates, errors naming file, line and column,
the keyed e-mail hash (and its refusal without a key), the customer-id map, the KPI engine's change marks, and
`forget` taking a person's orders with them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from kpi_core.cli import main
from kpi_core.model import email_hash
from kpi_core.store import open_store

KEY = "orders-test-key"

# Shopify's own order export: one row per line item, the order's fields on its first row only.
SHOPIFY_EXPORT = """Name,Email,Financial Status,Currency,Total,Created at,Cancelled at,Refunded Amount,\
Lineitem quantity,Lineitem sku,Id
#1001,Ana.Silva@Example.org,paid,EUR,59.80,2026-03-01 10:15:00 +0100,,,2,SKU-100,5001
#1001,,,,,,,,1,SKU-200,5001
#1002,ben@example.org,refunded,EUR,49.00,2026-03-02 09:00:00 +0000,2026-03-03 12:00:00 +0000,49.00,1,SKU-200,5002
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "helpdesk-kpi.toml"
    path.write_text(f'[store]\npath = "{tmp_path / "kpi.sqlite"}"\n\n[privacy]\nhash_key = "{KEY}"\n')
    os.chmod(path, 0o600)
    return path


def run(config: Path, *args: str) -> int:
    return main(["orders", "import", *args, "--config", str(config)])


def orders(config: Path) -> dict[str, dict[str, Any]]:
    store = open_store(config.parent / "kpi.sqlite")
    try:
        cursor = store.db.execute("SELECT * FROM orders ORDER BY source, source_id")
        names = [d[0] for d in cursor.description]
        out = {}
        for row in cursor.fetchall():
            record = dict(zip(names, row, strict=True))
            for key in ("refunds", "lines", "raw"):
                record[key] = json.loads(record[key]) if record[key] else None
            out[f"{record['source']}:{record['source_id']}"] = record
        return out
    finally:
        store.close()


def test_a_shopify_export_is_read_with_the_default_mapping(config: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    export = tmp_path / "orders_export.csv"
    export.write_text(SHOPIFY_EXPORT)
    assert run(config, str(export)) == 0
    assert "2 orders stored from 3 rows as source 'csv' (2 with a customer to match, 0 skipped)" in \
        capsys.readouterr().out
    got = orders(config)
    assert set(got) == {"csv:5001", "csv:5002"}  # the `Id` column, not the `Name` (#1001)
    first, second = got["csv:5001"], got["csv:5002"]
    # The address trimmed and lowercased before hashing, as the helpdesk connectors do.
    assert first["customer_key"] == email_hash("ana.silva@example.org", KEY.encode())
    assert first["created_at"] == "2026-03-01T09:15:00Z"  # +01:00 -> UTC
    assert (first["total"], first["currency"], first["refunds"]) == (59.8, "EUR", [])
    assert first["lines"] == [{"sku": "SKU-100", "quantity": 2}, {"sku": "SKU-200", "quantity": 1}]
    # Shopify's export dates no refund: it is dated at the cancellation.
    assert second["cancelled_at"] == "2026-03-03T12:00:00Z"
    assert second["refunds"] == [{"at": "2026-03-03T12:00:00Z", "amount": 49.0}]
    assert "ana.silva" not in (config.parent / "kpi.sqlite").read_bytes().decode("latin-1").lower()


def test_an_explicit_mapping_reads_other_exports_and_a_reimport_changes_nothing(
        config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = tmp_path / "bestellungen.csv"
    # A German spreadsheet: `;` separated, decimal commas, its own column names; one refund with its date.
    export.write_text("Bestellnummer;Kundennummer;Datum;Brutto;Währung;Erstattet;Erstattet am;Artikel;Menge\n"
                      "A-1;K7;2026-04-01T08:00:00Z;1234,50;eur;;;SKU-9;3\n"
                      "A-2;K8;2026-04-02;10,00;EUR;2,50;2026-04-05T10:00:00Z;;\n")
    mapping = tmp_path / "customers.csv"
    mapping.write_text("shop_customer_id,requester\nK7,zendesk:3811\n")
    args = [str(export), "--source", "webshop", "--customer-map", str(mapping), "--map", "Bestellnummer=order_id",
            "--map", "Kundennummer=customer_id", "--map", "Datum=created_at", "--map", "Brutto=total",
            "--map", "Währung=currency", "--map", "Erstattet=refund_amount", "--map", "Erstattet am=refunded_at",
            "--map", "Artikel=sku", "--map", "Menge=quantity"]
    assert run(config, *args) == 0
    first = orders(config)
    assert first["webshop:A-1"]["total"] == 1234.5 and first["webshop:A-1"]["currency"] == "EUR"
    assert first["webshop:A-1"]["requester"] == "zendesk:3811"  # the explicit customer-id map
    assert first["webshop:A-1"]["lines"] == [{"sku": "SKU-9", "quantity": 3}]
    assert first["webshop:A-2"]["requester"] is None and first["webshop:A-2"]["customer_key"] is None
    assert first["webshop:A-2"]["refunds"] == [{"at": "2026-04-05T10:00:00Z", "amount": 2.5}]
    assert first["webshop:A-2"]["created_at"] == "2026-04-02T00:00:00Z"

    assert run(config, *args) == 0  # the same file again
    assert orders(config) == first
    export.write_text(export.read_text().replace("10,00", "12,00"))  # a newer export of the same orders
    assert run(config, *args) == 0
    again = orders(config)
    assert len(again) == 2 and again["webshop:A-2"]["total"] == 12.0


def test_errors_name_the_file_line_and_column(config: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    export = tmp_path / "orders.csv"
    export.write_text("order id,email,created at,total\n1,a@x.org,2026-01-01,10\n2,b@x.org,last tuesday,5\n"
                      "3,c@x.org,2026-01-02,ten\n")
    assert run(config, str(export)) == 1  # the good order is stored, the others skipped and named
    err = capsys.readouterr().err
    assert f"skipped {export}:3: column 'created at': not a date and time: 'last tuesday' (order 2 skipped)" in err
    assert f"skipped {export}:4: column 'total': not a number: 'ten' (order 3 skipped)" in err
    assert set(orders(config)) == {"csv:1"}

    export.write_text("order id,email,total\n1,a@x.org,10\n")
    assert run(config, str(export)) == 2
    assert f"{export}: no column for created_at" in capsys.readouterr().err
    assert run(config, str(export), "--map", "total=price") == 2
    assert "unknown field 'price'" in capsys.readouterr().err
    bad_map = tmp_path / "map.csv"
    bad_map.write_text("id,requester\n7,3811\n")
    assert run(config, str(export), "--customer-map", str(bad_map)) == 2
    assert f"{bad_map}:2: expected shop_customer_id,source:requester_id" in capsys.readouterr().err


def test_emails_are_refused_without_the_hash_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "helpdesk-kpi.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "kpi.sqlite"}"\n')
    export = tmp_path / "orders.csv"
    export.write_text("order id,email,created at,total\n1,a@x.org,2026-01-01,10\n")
    assert run(config, str(export)) == 2
    assert "set [privacy] hash_key" in capsys.readouterr().err
    assert orders(config) == {}


def test_an_order_marks_its_customers_contacts_for_the_kpis_and_leaves_with_a_forgotten_person(
        config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = open_store(tmp_path / "kpi.sqlite")
    try:
        hashed = email_hash("ana@example.org", KEY.encode())
        store.upsert("people", [{"source": "zendesk", "source_id": "p1", "role": "customer", "email_hash": hashed},
                                {"source": "zendesk", "source_id": "p2", "role": "customer"}])
        store.upsert("contacts", [
            {"source": "zendesk", "source_id": str(n), "channel": "email", "status": "solved",
             "created_at": "2026-03-01T00:00:00Z", "requester_id": requester}
            for n, requester in ((1, "p1"), (2, "p2"), (3, "p1"))])
        store.db.execute("DELETE FROM kpi_dirty_contacts")
        store.db.execute("DELETE FROM kpi_dirty_days")
        store.db.conn.commit()
    finally:
        store.close()
    export = tmp_path / "orders.csv"
    export.write_text("order id,email,customer id,created at,total\n"
                      "9,ANA@example.org ,,2026-03-04T10:00:00Z,30\n10,,C2,2026-03-05T10:00:00Z,5\n")
    mapping = tmp_path / "map.csv"
    mapping.write_text("C2,zendesk:p2\n")
    assert run(config, str(export), "--customer-map", str(mapping)) == 0
    store = open_store(tmp_path / "kpi.sqlite")
    try:
        # Ana's contacts by the e-mail hash, p2's by the customer-id map; the orders' days.
        assert sorted(store.db.execute("SELECT source_id FROM kpi_dirty_contacts").fetchall()) == [("1",), ("2",),
                                                                                                    ("3",)]
        assert sorted(store.db.execute("SELECT day FROM kpi_dirty_days").fetchall()) == [("2026-03-04",),
                                                                                         ("2026-03-05",)]
    finally:
        store.close()

    assert main(["forget", "--email", "ana@example.org", "--config", str(config)]) == 0
    assert "orders" in capsys.readouterr().out
    assert set(orders(config)) == {"csv:10"}, "Ana's order left with her; the other customer's stays"


def test_forgetting_an_address_the_helpdesks_never_saw_erases_that_shop_customers_orders(
        config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = tmp_path / "orders.csv"
    export.write_text("order id,email,created at,total\n1,only@shop.example,2026-03-04T10:00:00Z,30\n"
                      "2,other@shop.example,2026-03-05T10:00:00Z,5\n")
    assert run(config, str(export)) == 0
    capsys.readouterr()
    assert main(["forget", "--email", " Only@Shop.example", "--config", str(config)]) == 0
    said = capsys.readouterr().out
    assert "forget a shop customer:" in said and "orders" in said and "the shop still holds" in said
    assert set(orders(config)) == {"csv:2"}
    assert main(["forget", "--email", "only@shop.example", "--config", str(config)]) == 1  # nothing left of them
