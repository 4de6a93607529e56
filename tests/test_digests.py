"""Review digests: their content on a hand-built store (values, movers, reasons, diagnostics, events), delivery
to a real SMTP server and HTTP receiver on loopback, once per period across daemon cycles, and the page in
Chromium (screenshots in tests/artifacts/)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from chromium import DevTools
from kpi_fixtures import Data, make_store, ts
from loopback_sinks import SMTP_PASSWORD, SMTP_USER, Receiver, SmtpServer, http_receiver, smtp_server

from kpi_core import cli, events
from kpi_core.digests import deliver, gather, last_complete, render
from kpi_core.digests.gather import Digest
from kpi_core.digests.periods import due, due_at
from kpi_core.kpis.periods import Grain, Period
from kpi_core.report import write_report
from kpi_core.scheduler import Daemon
from kpi_core.settings import Settings, load_settings
from kpi_core.store import Store, store_at

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
NOW = datetime(2026, 4, 20, 12, 0, tzinfo=timezone.utc)  # a Monday: the last complete week is 13-19 April
WEEK = Period(date(2026, 4, 13), date(2026, 4, 20), Grain.WEEK)
TOKEN = "T0KEN-d1gest-secret"


def write_config(folder: Path, store: Path, extra: str = "") -> Path:
    path = folder / "helpdesk-kpi.toml"
    path.write_text(f'[store]\npath = "{store}"\n[kpis]\nmin_n = 1\n{extra}')
    return path


def sinks_toml(smtp: SmtpServer, receiver: Receiver, files: Path, cadences: str = '["weekly"]') -> str:
    return (f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\nusername = "{SMTP_USER}"\npassword = "{SMTP_PASSWORD}"\n'
            f'sender = "kpi@acme.example"\nca_file = "{smtp.ca_file}"\n'
            f'[digests]\nenabled = true\ncadences = {cadences}\nsend_at = "00:00"\nemail_to = ["lead@acme.example"]\n'
            f'webhook_url = "{receiver.url}/hooks/{TOKEN}"\nfile_dir = "{files}"\n')


def hand_built() -> Data:
    """Week 15 (6-12 April): 4 contacts about billing, answered in an hour, resolved in 2 h, half rated badly.
    Week 16 (13-19 April): 8 contacts, 5 about shipping, answered in 4 h, resolved in 10 h, all rated well."""
    data = Data()
    for i in range(4):
        cid = f"w15-{i}"
        data.contact(cid, ts(7 + i, month=4), reply=60, resolved=2, tags=["billing"])
        data.survey(f"s-{cid}", "csat", 1 if i < 2 else 5, "1-5", ts(8 + i, 12, month=4), contact=cid)
    for i in range(8):
        cid = f"w16-{i}"
        data.contact(cid, ts(13 + i % 6, 9 + i, month=4), reply=240, resolved=10,
                     tags=["shipping"] if i < 5 else ["billing"])
        data.survey(f"s-{cid}", "csat", 5, "1-5", ts(19, 20, month=4), contact=cid)
    return data


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Settings, Digest]]:
    folder = tmp_path_factory.mktemp("digest")
    store = make_store(folder, hand_built())
    events.add(store, date(2026, 4, 15), date(2026, 4, 16), "Carrier strike", {"market": "de"})
    events.add(store, date(2026, 4, 5), None, "Easter")  # the week before: not in this digest
    settings = load_settings(write_config(folder, folder / "kpi.sqlite"))
    yield store, settings, gather(store, settings, "weekly", WEEK, NOW)
    store.close()


def test_the_period_is_the_last_complete_one_in_the_accounts_time_zone() -> None:
    assert last_complete("weekly", NOW, "UTC") == WEEK
    assert last_complete("monthly", NOW, "UTC") == Period(date(2026, 3, 1), date(2026, 4, 1), Grain.MONTH)
    assert last_complete("quarterly", NOW, "UTC") == Period(date(2026, 1, 1), date(2026, 4, 1), Grain.QUARTER)
    # 23:30 UTC on Sunday is already Monday in Berlin: that week is complete there, not in UTC.
    late_sunday = datetime(2026, 4, 19, 23, 30, tzinfo=timezone.utc)
    assert last_complete("weekly", late_sunday, "Europe/Berlin") == WEEK
    assert last_complete("weekly", late_sunday, "UTC").start == date(2026, 4, 6)
    # Due from send_at local time on the day after the period.
    assert due_at(WEEK, "08:00", "Europe/Berlin") == datetime(2026, 4, 20, 6, 0, tzinfo=timezone.utc)
    assert due("weekly", datetime(2026, 4, 20, 5, 59, tzinfo=timezone.utc), "08:00", "Europe/Berlin") is None
    assert due("weekly", datetime(2026, 4, 20, 6, 0, tzinfo=timezone.utc), "08:00", "Europe/Berlin") == WEEK


def test_the_digest_shows_the_cadences_kpis_against_the_period_before(built: tuple[Store, Settings, Digest]) -> None:
    _, settings, digest = built
    figures = {f.kpi: f for f in digest.figures}
    assert list(figures) and set(figures) <= set(settings.digests.kpis_of("weekly"))
    assert digest.title == "Weekly digest 2026-W16" and digest.previous.start == date(2026, 4, 6)
    assert (figures["ticket_volume"].value, figures["ticket_volume"].previous) == (8, 4)
    resolution = figures["resolution_time_median"]
    assert (resolution.value, resolution.previous, resolution.status) == (10, 2, "ok")
    assert resolution.change is not None and resolution.change.verdict == "worse"
    assert resolution.relative == pytest.approx(4.0)
    assert digest.volume == 8


def test_the_biggest_movers_are_judged_by_each_kpis_direction(built: tuple[Store, Settings, Digest]) -> None:
    _, _, digest = built
    worse = {f.kpi: f.relative for f in digest.worse}
    assert len(digest.worse) == 5
    assert worse["resolution_time_median"] == pytest.approx(4.0)  # 2 h -> 10 h
    assert [f.relative for f in digest.worse] == sorted((f.relative for f in digest.worse), reverse=True)
    assert {f.kpi for f in digest.better} >= {"csat_pct"}  # 50 % -> 100 %: higher is better
    csat = next(f for f in digest.better if f.kpi == "csat_pct")
    assert (csat.previous, csat.value, csat.relative) == (50, 100, pytest.approx(1.0))
    assert all(f.direction is not None for f in digest.worse + digest.better)  # volume has no better way


def test_reasons_diagnostics_and_events_of_the_period(built: tuple[Store, Settings, Digest]) -> None:
    _, _, digest = built
    reasons = {r["reason"]: (r["volume"], r["previous_volume"], r["change_pct"]) for r in digest.reasons}
    assert reasons == {"shipping": (5, 0, None), "billing": (3, 4, -25.0)}
    assert [e.title for e in digest.events] == ["Carrier strike"]
    spike = [d for d in digest.diagnostics if d["diagnostic"] == "volume_spike" and d["segment"] == {}]
    assert len(spike) == 1 and spike[0]["message"].endswith("(during: Carrier strike)")
    assert spike[0]["evidence"]["ticket_volume"] == 8


def test_the_text_and_html_parts(built: tuple[Store, Settings, Digest]) -> None:
    _, _, digest = built
    text = render.text(digest)
    assert text.startswith("Weekly digest 2026-W16\n2026-04-13 to 2026-04-19 (UTC) against 2026-W15; 8 contacts")
    assert "  2026-04-15 to 2026-04-16  Carrier strike (market=de)" in text
    assert "  Median resolution time: 10.0 h (before 2.0 h)  \u25b2 +8.0 h (worse); target \u2264 12.0 h; On target" \
        in text
    assert "  shipping: 5 contacts (62.5 %), before 0 (new)" in text
    page = render.html(digest)
    # Self-contained and mail-client safe: no resource to load, no script, every style inline.
    assert not re.search(r"<(script|link|style|img)\b|\bsrc=|url\(|https?://", page)
    assert re.search(r'<tr data-kpi="resolution_time_median" data-value="10.0">', page)
    assert 'data-mover="better" data-kpi="csat_pct"' in page and 'data-reason="shipping"' in page
    assert "during: Carrier strike" in page


def test_delivered_by_email_webhook_and_file_to_real_receivers(built: tuple[Store, Settings, Digest],
                                                              tmp_path: Path) -> None:
    store, _, digest = built
    with smtp_server(tmp_path) as smtp, http_receiver() as receiver:
        settings = load_settings(write_config(tmp_path, tmp_path / "unused.sqlite",
                                              sinks_toml(smtp, receiver, tmp_path)))
        sent = deliver.deliver(store, settings, digest, deliver.configured(settings, digest.cadence))
        assert sent.ok and sent.delivered == ["email", "webhook", "file"]
        ((recipients, message),) = smtp.mailbox.messages
        assert recipients == ["lead@acme.example"] and message["Subject"] == "Weekly digest 2026-W16"
        assert smtp.mailbox.logins == [SMTP_USER]  # over STARTTLS with the login of [smtp]
        parts = {part.get_content_type(): part.get_payload(decode=True).decode() for part in message.walk()
                 if not part.is_multipart()}
        assert parts["text/plain"].replace("\r\n", "\n") == render.text(digest)
        assert "Carrier strike" in parts["text/html"]
        ((path, body),) = receiver.posts
        assert path == f"/hooks/{TOKEN}" and body["kind"] == "digest" and body["cadence"] == "weekly"
        assert {k["kpi"]: k["value"] for k in body["kpis"]}["ticket_volume"] == 8
        assert [e["title"] for e in body["events"]] == ["Carrier strike"]
        assert body["movers"]["worse"][0]["change_pct"] == 400.0
    assert sorted(p.name for p in sent.files) == ["digest-weekly-2026-W16.html", "digest-weekly-2026-W16.txt"]
    assert deliver.sent_sinks(store, "weekly", WEEK) == ["email", "file", "webhook"]


def test_the_slack_style_body(built: tuple[Store, Settings, Digest], tmp_path: Path) -> None:
    store, _, digest = built
    with http_receiver() as receiver:
        extra = f'[digests]\nwebhook_url = "{receiver.url}/x"\nwebhook_style = "slack"\n'
        settings = load_settings(write_config(tmp_path, tmp_path / "unused.sqlite", extra))
        assert deliver.deliver(store, settings, digest, ["webhook"]).ok
        ((_, body),) = receiver.posts
    assert body["blocks"][0]["text"]["text"] == "Weekly digest 2026-W16"
    assert "*Median resolution time*: 10.0 h" in body["text"] and "Carrier strike" in body["text"]


def test_the_daemon_sends_each_digest_once_per_period_across_restarts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with smtp_server(tmp_path) as smtp, http_receiver() as receiver:
        receiver.status = [400]  # the webhook refuses the first digest: the e-mail must not go twice for it
        config = write_config(tmp_path, tmp_path / "daemon.sqlite", sinks_toml(smtp, receiver, tmp_path))
        first = Daemon(load_settings(config)).run_once()
        assert first.digests is False and not first.ok
        assert len(smtp.mailbox.messages) == 1 and len(receiver.posts) == 1
        assert any(f"the webhook at 127.0.0.1:{receiver.url.rsplit(':', 1)[1]} answered 400" in e
                   for e in first.errors)
        second = Daemon(load_settings(config)).run_once()  # a restarted daemon: only the webhook is tried again
        assert second.digests is True and second.ok
        assert len(smtp.mailbox.messages) == 1 and len(receiver.posts) == 2
        third = Daemon(load_settings(config)).run_once()
        assert third.digests is True
        assert len(smtp.mailbox.messages) == 1 and len(receiver.posts) == 2  # nothing again in the same week
    with store_at(tmp_path / "daemon.sqlite") as store:
        rows = store.db.conn.execute("SELECT cadence, sinks FROM digests_sent").fetchall()
        assert rows == [("weekly", '["email", "file", "webhook"]')]
        dump = "\n".join(store.db.conn.iterdump())
    # Secrets stay out of logs, errors and the store.
    for secret in (TOKEN, SMTP_PASSWORD):
        assert secret not in caplog.text and secret not in dump and secret not in " ".join(first.errors)


def test_dry_run_prints_the_digest_and_where_it_would_go(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with smtp_server(tmp_path) as smtp, http_receiver() as receiver:
        config = write_config(tmp_path, tmp_path / "dry.sqlite", sinks_toml(smtp, receiver, tmp_path))
        assert cli.main(["digest", "--config", str(config), "--period", "week", "--dry-run"]) == 0
        out, err = capsys.readouterr()
        assert out.startswith("Weekly digest ") and "Key figures" in out and "Biggest movers" in out
        assert err.strip() == (f"dry run: nothing sent; it would go to e-mail to lead@acme.example through"
                               f" 127.0.0.1:{smtp.port}; webhook at 127.0.0.1:{receiver.url.rsplit(':', 1)[1]}"
                               f" (json body); files in {tmp_path}")
        assert smtp.mailbox.messages == [] and receiver.posts == []
    with store_at(tmp_path / "dry.sqlite") as store:
        assert store.count("digests_sent") == 0


def test_without_a_sink_sending_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, tmp_path / "s.sqlite")
    assert cli.main(["digest", "--config", str(config)]) == 2
    assert "[digests]: no sink is configured for the weekly digest" in capsys.readouterr().err


def test_digest_settings_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, tmp_path / "s.sqlite", '[digests]\nsend_at = "8am"\nkpis = {weekly = ["nope"]}\n'
                                                          f'webhook_url = "ftp://hooks/{TOKEN}"\n')
    assert cli.main(["check-config", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "digests.send_at: expected a local time of day" in err
    assert "digests.kpis: weekly: unknown KPI 'nope'" in err
    assert "digests.webhook_url: expected an http:// or https:// URL" in err and TOKEN not in err
    config.write_text(f'[store]\npath = "{tmp_path / "s.sqlite"}"\n[digests]\nenabled = true\n')
    assert cli.main(["check-config", "--config", str(config)]) == 2
    assert "digests: enabled: the daemon needs somewhere to send the weekly, monthly, quarterly digest" \
        in capsys.readouterr().err
    config.write_text(f'[store]\npath = "{tmp_path / "s.sqlite"}"\n[digests]\nenabled = true\ncadences = ["weekly",'
                      f' "monthly"]\n[digests.to.weekly]\nfile_dir = "{tmp_path}"\n[digests.to.hourly]\n'
                      f'file_dir = "{tmp_path}"\n[digests.to.daily]\n')
    assert cli.main(["check-config", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "digests.to: 'hourly' is not a cadence" in err


def test_a_cadence_with_sinks_of_its_own_goes_there_only(built: tuple[Store, Settings, Digest],
                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store, _, digest = built
    own = tmp_path / "team"
    own.mkdir()
    with http_receiver() as receiver:
        extra = (f'[digests]\nfile_dir = "{tmp_path}"\n'  # every cadence without a table of its own
                 f'[digests.to.weekly]\nwebhook_url = "{receiver.url}/team"\nwebhook_style = "slack"\n'
                 f'file_dir = "{own}"\n')
        settings = load_settings(write_config(tmp_path, tmp_path / "unused.sqlite", extra))
        assert deliver.configured(settings, "weekly") == ["webhook", "file"]
        assert deliver.configured(settings, "monthly") == ["file"]
        sent = deliver.deliver(store, settings, digest, deliver.configured(settings, digest.cadence))
        assert sent.ok
        ((path, body),) = receiver.posts
    assert path == "/team" and body["blocks"][0]["text"]["text"] == "Weekly digest 2026-W16"
    assert {p.parent for p in sent.files} == {own} and not list(tmp_path.glob("digest-*"))
    config = write_config(tmp_path, tmp_path / "s.sqlite", '[digests]\nenabled = true\ncadences = ["weekly"]\n'
                                                          f'[digests.to.weekly]\nfile_dir = "{own}"\n')
    assert cli.main(["check-config", "--config", str(config)]) == 0  # the weekly digest has somewhere to go
    capsys.readouterr()


# --- in a real browser ----------------------------------------------------------------------------


def test_the_digest_and_the_reports_event_bands_in_chromium(built: tuple[Store, Settings, Digest], browser: DevTools,
                                                           tmp_path: Path) -> None:
    store, settings, digest = built
    page = tmp_path / "digest.html"
    page.write_text(render.html(digest), encoding="utf-8")
    session, url = browser.open_page(page, width=900)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.screenshot(session, ARTIFACTS / "digest-weekly.png", width=900)
    assert browser.problems(session) == [] and browser.requests(session) == [url]
    assert "Carrier strike" in browser.evaluate("document.body.innerText", session)
    widths = browser.evaluate("[...document.querySelectorAll('table[data-table]')]"
                              ".map(t => t.getBoundingClientRect().width)", session)
    assert len(widths) == 4 and min(widths) > 600  # figures, movers, diagnostics, reasons: full width, readable

    report = write_report(store, settings, tmp_path / "report.html", period="week", until=WEEK.end, now=NOW)
    html = report.path.read_text(encoding="utf-8")
    chart = html[html.index('id="chart-resolution-title"'):]
    chart = chart[:chart.index("</svg>")]
    assert ">Carrier strike</text>" in chart  # the band's label drawn in the chart
    assert "Shaded: Carrier strike (market=de), 2026-04-15 to 2026-04-16." in chart  # and in its text alternative
    assert "Shaded: events of the event log \u2014 Carrier strike (market=de), 2026-04-15 to 2026-04-16" in html
    session, url = browser.open_page(report.path)
    browser.screenshot(session, ARTIFACTS / "digest-report-events.png")
    assert browser.problems(session) == [] and browser.requests(session) == [url]


def test_a_webhook_url_in_a_file_others_can_read_is_warned_about(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, tmp_path / "s.sqlite", f'[digests]\nwebhook_url = "https://hooks.example/{TOKEN}"\n')
    config.chmod(0o644)
    assert cli.main(["check-config", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert "holds a secret and is readable by other users" in err
    assert TOKEN not in out + err


def test_digest_sends_to_the_sinks_and_records_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "digests"
    folder.mkdir()
    config = write_config(tmp_path, tmp_path / "s.sqlite", f'[digests]\nfile_dir = "{folder}"\n')
    assert cli.main(["digest", "--config", str(config), "--period", "month"]) == 0
    out = capsys.readouterr().out
    (html,) = folder.glob("digest-monthly-*.html")
    label = html.stem.removeprefix("digest-monthly-")
    assert out.strip() == f"Monthly digest {label}: sent, files in {folder}"
    assert (folder / f"digest-monthly-{label}.txt").read_text().startswith(f"Monthly digest {label}\n")
    with store_at(tmp_path / "s.sqlite") as store:
        assert store.db.conn.execute("SELECT cadence, sinks FROM digests_sent").fetchall() == [("monthly", '["file"]')]
