"""The quarantine guard every connector adds its records through (connectors/records.py: `keep`, `keep_row`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.base import Page
from connectors.records import Row, iso_time, keep, keep_row
from kpi_core.model import RecordError


def message(source_id: str, contact_id: str = "7") -> Row:
    return {"source": "zendesk", "source_id": source_id, "contact_id": contact_id, "public": True,
            "created_at": "2026-03-01T09:00:00Z"}


def event(source_id: str) -> Row:
    return {"source": "zendesk", "source_id": source_id, "contact_id": "7", "kind": "resolved",
            "at": "2026-03-01T09:00:00Z"}


def test_a_records_rows_are_added_in_order_table_by_table() -> None:
    page = Page(records={"messages": [message("0")]})

    def rows(item: Row) -> Iterator[tuple[str, Row]]:
        yield "messages", message(f"{item['id']}a")
        yield "status_events", event(f"{item['id']}e")
        yield "messages", message(f"{item['id']}b")

    assert keep(page, "ticket_event", {"id": 1}, rows)
    assert keep(page, "ticket_event", {"id": 2}, rows)
    assert list(page.records) == ["messages", "status_events"]
    assert [r["source_id"] for r in page.records["messages"]] == ["0", "1a", "1b", "2a", "2b"]
    assert [r["source_id"] for r in page.records["status_events"]] == ["1e", "2e"]
    assert page.rejected == []


def test_a_record_with_one_bad_row_adds_none_of_its_rows() -> None:
    page = Page()

    def rows(item: Row) -> Iterator[tuple[str, Row]]:
        yield "messages", message("1a")
        yield "messages", {**message("1b"), "public": "yes"}

    assert not keep(page, "ticket_event", {"id": 1}, rows)
    assert page.records == {}
    assert page.rejected == [("ticket_event/1", "messages zendesk:1b: public should be bool, got str")]


def test_a_failing_reader_or_an_unknown_table_quarantines_the_record() -> None:
    page = Page()

    def missing(item: Row) -> Iterator[tuple[str, Row]]:
        yield "messages", message("1a")
        yield "messages", message(item["absent"])

    def elsewhere(item: Row) -> Iterator[tuple[str, Row]]:
        yield "tickets", message("2a")

    assert not keep(page, "ticket_event", {"id": 1}, missing)
    assert not keep(page, "ticket_event", {"id": 2}, elsewhere)
    assert not keep(page, "ticket_event", ["not", "an", "object"], missing)
    assert page.records == {}
    assert page.rejected == [("ticket_event/1", "missing 'absent'"), ("ticket_event/2", "missing 'tickets'"),
                             ("ticket_event/?", "expected an object, got list")]


def test_keep_row_adds_one_row_or_nothing_to_store() -> None:
    page = Page()

    def build(item: Row) -> Row | None:
        if item.get("skip"):
            return None
        if item.get("bad"):
            raise RecordError("created_at is missing")
        return message(str(item["id"]))

    assert keep_row(page, "comment", {"id": 1}, "messages", build)
    assert keep_row(page, "comment", {"id": 2, "skip": True}, "messages", build)
    assert not keep_row(page, "comment", {"id": 3, "bad": True}, "messages", build)
    assert not keep_row(page, "comment", "text", "messages", build)
    assert [r["source_id"] for r in page.records["messages"]] == ["1"]
    assert page.rejected == [("comment/3", "created_at is missing"), ("comment/?", "expected an object, got str")]


def test_times_in_the_stores_form_pass_as_they_are_and_others_are_read() -> None:
    stamp = "2026-03-01T09:00:05Z"
    assert iso_time(stamp) is stamp
    assert iso_time("2026-03-01T10:00:05+01:00") == stamp
    assert iso_time(1772355605) == stamp
    for bad, reason in ((None, "when is missing"), ("", "when is missing"), ("soon", "when is not a timestamp"),
                        (True, "when should be a time, got bool")):
        with pytest.raises(RecordError, match=f"^{reason}$"):
            iso_time(bad, "when")
