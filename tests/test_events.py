"""The event log: the `events` commands on a real store, CSV imports and their errors, and diagnostics that name
the events they fire during."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from kpi_fixtures import NOW, Data, make_store, ts

from kpi_core import cli, events
from kpi_core.kpis.diagnostics import diagnose
from kpi_core.settings import KpiSettings
from kpi_core.store import store_at


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "helpdesk-kpi.toml"
    path.write_text(f'[store]\npath = "{tmp_path / "store.sqlite"}"\n[kpis]\ntimezone = "Europe/Berlin"\n')
    return path


def run(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["events", argv[0], "--config", str(config), *argv[1:]])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_add_list_import_and_remove_round_trip(config: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, config, "add", "--at", "2026-11-27", "--until", "2026-11-30",
                       "--title", "Black Friday sale", "--segment", "market=de")
    assert code == 0 and out.startswith("event 1 added: 2026-11-27 to 2026-11-30 Black Friday sale (market=de)")
    code, out, _ = run(capsys, config, "add", "--at", "2026-11-27", "--until", "2026-11-30",
                       "--title", "Black  Friday sale ", "--segment", "market=de")
    assert code == 0 and "event 1 is in the log already" in out  # the same event is one event

    # A spreadsheet's export: UTF-16 with a BOM, separated by semicolons, an empty `ends` for a one-day event.
    csv_file = tmp_path / "events.csv"
    csv_file.write_text("Starts;Ends;Title;Segment\r\n2026-12-01;;Outage EU;\r\n"
                        "2026-12-02;2026-12-03;Launch of the app;channel=chat\r\n", encoding="utf-16")
    code, out, _ = run(capsys, config, "import", str(csv_file))
    assert (code, out.strip()) == (0, f"{csv_file}: 2 events read, 2 new (0 in the log already)")
    code, out, _ = run(capsys, config, "import", str(csv_file))
    assert "2 events read, 0 new (2 in the log already)" in out

    code, out, _ = run(capsys, config, "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["id", "dates", "segment", "title"]
    assert lines[1].split() == ["1", "2026-11-27", "to", "2026-11-30", "market=de", "Black", "Friday", "sale"]
    assert lines[2].split() == ["2", "2026-12-01", "all", "Outage", "EU"]
    assert cli.main(["events", "--config", str(config), "list"]) == 0  # --config before the action, too
    assert capsys.readouterr().out == out
    code, out, _ = run(capsys, config, "list", "--format", "json", "--since", "2026-12-01")
    listed = json.loads(out)
    assert [(e["id"], e["starts"], e["ends"], e["segment"]) for e in listed] == [
        (2, "2026-12-01", None, {}), (3, "2026-12-02", "2026-12-03", {"channel": "chat"})]

    code, out, _ = run(capsys, config, "remove", "2")
    assert code == 0 and out.strip() == "event 2 removed: 2026-12-01 Outage EU"
    code, _, err = run(capsys, config, "remove", "2")
    assert code == 1 and "no event 2" in err
    with store_at(tmp_path / "store.sqlite") as store:
        assert [e.title for e in events.between(store.db.conn)] == ["Black Friday sale", "Launch of the app"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--at", "2026-11-27", "--until", "2026-11-26", "--title", "x"],
     "the event ends (2026-11-26) before it starts (2026-11-27)"),
    (["--at", "27.11.2026", "--title", "x"], "--at: expected YYYY-MM-DD, got '27.11.2026'"),
    (["--at", "2026-11-27", "--title", "  "], "the event needs a title"),
    (["--at", "2026-11-27", "--title", "x", "--segment", "market"],
     "segment 'market': expected DIMENSION=VALUE such as market=de"),
])
def test_a_bad_event_is_a_usage_error_saying_what_is_wrong(config: Path, capsys: pytest.CaptureFixture[str],
                                                           argv: list[str], message: str) -> None:
    code, _, err = run(capsys, config, "add", *argv)
    assert code == 2
    assert err.strip() == f"helpdesk-kpi events: {message}"


@pytest.mark.parametrize(("text", "where"), [
    ("starts,title\n2026-12-01,fine\n2026-13-01,bad month\n",
     "line 3: column starts: expected a date YYYY-MM-DD, got '2026-13-01'"),
    ("date,event,until\n2026-12-01,ok,\n2026-12-05,backwards,2026-12-04\n",
     "line 3: column until: the event ends (2026-12-04) before it starts (2026-12-05)"),
    ("starts,title,segment\n2026-12-01,ok,market=de\n2026-12-02,bad,de\n",
     "line 3: column segment: segment 'de': expected DIMENSION=VALUE such as market=de"),
    ("starts,title\n2026-12-01,ok\n2026-12-02,\n", "line 3: column title: the event needs a title"),
    ("when,what\n2026-12-01,x\n", "line 1: no column starts or title (the header has: when, what)"),
])
def test_import_errors_name_the_file_line_and_column_and_store_nothing(
        config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, where: str) -> None:
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text(text)
    code, _, err = run(capsys, config, "import", str(csv_file))
    assert code == 2
    assert err.startswith(f"helpdesk-kpi events: {csv_file}: {where}")
    with store_at(tmp_path / "store.sqlite") as store:
        assert events.between(store.db.conn) == []  # all or nothing: the good first row is not kept either


def test_events_overlap_periods_by_local_dates_and_concern_their_segment() -> None:
    sale = events.Event(1, date(2026, 11, 27), date(2026, 11, 30), "sale", {"market": "de"})
    assert sale.overlaps(date(2026, 11, 30), date(2026, 12, 7))  # its last day is in the week
    assert not sale.overlaps(date(2026, 12, 1), date(2026, 12, 2))
    assert not sale.overlaps(date(2026, 11, 1), date(2026, 11, 27))  # `end` is exclusive
    assert sale.concerns({}) and sale.concerns({"market": "de", "channel": "chat"})
    assert not sale.concerns({"market": "fr"})


def test_a_diagnostic_that_fires_during_an_event_names_it(tmp_path: Path) -> None:
    data = Data()
    for month, count in ((1, 3), (2, 3), (3, 15)):  # March's volume is five times the months before
        for i in range(count):
            data.contact(f"m{month}-{i}", ts(2 + i, month=month), reply=30, resolved=4)
    store = make_store(tmp_path, data)
    settings = KpiSettings(min_n=1)
    before = diagnose(store, settings, date(2026, 3, 1), date(2026, 4, 1), "month", now=NOW)
    spikes = [d for d in before if d["diagnostic"] == "volume_spike"]
    assert {"{}", '{"channel": "email"}'} <= {json.dumps(d["segment"]) for d in spikes}
    assert all("during" not in d["message"] and "events" not in d for d in before)

    sale, _ = events.add(store, date(2026, 3, 10), date(2026, 3, 12), "Spring sale")
    events.add(store, date(2026, 3, 31), None, "Chat outage", {"channel": "chat"})
    events.add(store, date(2026, 2, 5), None, "February launch")  # another period: not named
    after = diagnose(store, settings, date(2026, 3, 1), date(2026, 4, 1), "month", now=NOW)
    by_segment = {json.dumps(d["segment"]): d for d in after if d["diagnostic"] == "volume_spike"}
    overall, email = by_segment["{}"], by_segment['{"channel": "email"}']
    assert overall["message"].endswith("(during: Spring sale; Chat outage)")
    assert [e["title"] for e in overall["events"]] == ["Spring sale", "Chat outage"]
    assert overall["events"][0] == sale.as_json()
    # A chat outage explains no e-mail figure.
    assert email["message"].endswith("(during: Spring sale)")
    # The figures are the same with or without events: only the text and the events were added.
    assert [(d["diagnostic"], d["segment"], d["evidence"]) for d in after] == \
        [(d["diagnostic"], d["segment"], d["evidence"]) for d in before]
    store.close()
