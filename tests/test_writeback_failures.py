"""Write-back when things go wrong or must be held back: dry runs, type mismatches, refused tickets in a
bulk job, tickets closed since the last sync, 429s, notes of unknown outcome, the budget, the settings.

Each test has its own small sandbox (real HTTP on loopback) and store; assertions read the fakes'
request logs and the ledger.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from connectors.sandbox import Sandbox
from kpi_core import cli, status
from kpi_core.settings import ConfigProblem, Settings, load_settings
from kpi_core.store import Store, open_store
from kpi_core.sync import sync_all
from kpi_core.writeback.metrics import context
from kpi_core.writeback.push import daemon_push_step, push

SEED = 31


def writeback_toml(mappings: list[tuple[str, str, str, str]], notes: list[tuple[str, str, str]] = (),
                   *, enabled: bool = True, budget: int = 1000) -> str:
    lines = ["[writeback]", f"enabled = {'true' if enabled else 'false'}", f"max_writes_per_run = {budget}", ""]
    for helpdesk, object, metric, name in mappings:
        lines += ["[[writeback.mappings]]", f'helpdesk = "{helpdesk}"', f'object = "{object}"', f'metric = "{metric}"',
                  f'field = "{name}"', ""]
    for helpdesk, rule, template in notes:
        lines += ["[[writeback.notes]]", f'helpdesk = "{helpdesk}"', f'rule = "{rule}"', f'template = "{template}"', ""]
    return "\n".join(lines)


class Setup:
    """A started sandbox of some helpdesks, a config with a [writeback] section, a synced store."""

    def __init__(self, path: Path, names: tuple[str, ...], toml: str, tickets: int = 160,
                 fields: tuple[tuple[str, str, str, str], ...] = ()) -> None:
        self.sandbox = Sandbox.generate(seed=SEED, tickets=tickets, names=names)
        self.sandbox.start()
        for source, object, key, kind in fields:  # fields an admin created beforehand
            ticket_field = source == "zendesk" and object == "ticket"  # Zendesk keys ticket fields by id
            self.sandbox.world.define_field(source, object, "" if ticket_field else key, kind, key)
        self.config = path / "helpdesk-kpi.toml"
        self.config.write_text(self.sandbox.config_toml(str(path / "store.sqlite")) + "\n" + toml)
        self.settings = load_settings(self.config)
        self.store = open_store(self.settings.store.path)
        assert all(r.ok for r in sync_all(self.store, self.settings))
        self.clear()

    def clear(self) -> None:
        for fake in self.sandbox.fakes.values():
            fake.clear_log()

    def writes(self, name: str) -> list[Any]:
        return [c for c in self.sandbox[name].calls() if c.method in ("PUT", "POST")]

    def cli(self, *args: str) -> int:
        return cli.main([*args, "--config", str(self.config)])

    def close(self) -> None:
        self.store.close()
        self.sandbox.stop()


@pytest.fixture
def make(tmp_path: Path):
    made: list[Setup] = []

    def build(names: tuple[str, ...], toml: str, **options: Any) -> Setup:
        setup = Setup(tmp_path, names, toml, **options)
        made.append(setup)
        return setup

    yield build
    for setup in made:
        setup.close()


def ledger(store: Store, status_: str | None = None) -> list[dict[str, Any]]:
    sql = "SELECT * FROM writeback_ledger" + (" WHERE status = ?" if status_ else "")
    return list(store.db.query(sql, [status_] if status_ else []))


ZENDESK_FRT = ("zendesk", "ticket", "first_response_minutes", "kpi_frt")
FRESHDESK_FRT = ("freshdesk", "ticket", "first_response_minutes", "cf_kpi_frt_minutes")


def test_dry_run_prints_the_plan_and_sends_nothing(make: Any, capsys: pytest.CaptureFixture[str]) -> None:
    notes = [("freshdesk", "sla_breached", "Missed: {first_response_minutes}")]
    s = make(("zendesk", "freshdesk"), writeback_toml([ZENDESK_FRT, FRESHDESK_FRT], notes, enabled=False),
             fields=(("zendesk", "ticket", "kpi_frt", "decimal"),))
    assert s.cli("push") == 2  # disabled: only a dry run is allowed
    capsys.readouterr()
    assert s.cli("push", "--dry-run") == 0
    printed = capsys.readouterr().out
    assert all(not s.writes(name) for name in ("zendesk", "freshdesk"))
    assert "changes planned" in printed and "first_response_minutes" in printed and "not written yet" in printed
    assert "note: sla_breached" in printed
    assert not ledger(s.store)
    s.clear()  # definitions are cached now: a second dry run reads nothing either
    assert s.cli("push", "--dry-run", "--source", "zendesk") == 0
    assert not s.sandbox["zendesk"].calls() and not s.sandbox["freshdesk"].calls()
    assert daemon_push_step(s.settings) is None  # disabled: the daemon has no push job


def test_a_field_type_mismatch_is_refused_before_anything_is_written(make: Any,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    s = make(("zendesk", "freshdesk"), writeback_toml([ZENDESK_FRT, ("zendesk", "ticket", "sla_met", "kpi_sla"),
                                                       FRESHDESK_FRT]),
             fields=(("zendesk", "ticket", "kpi_frt", "decimal"), ("zendesk", "ticket", "kpi_sla", "integer")))
    assert s.cli("push") == 1
    err = capsys.readouterr().err
    assert "zendesk: REFUSED" in err and "[[writeback.mappings]] #2 (zendesk ticket sla_met -> field 'kpi_sla')" in err
    assert "integer field; sla_met is a yes/no value, which goes into a checkbox or text field" in err
    assert not s.writes("zendesk")  # not even the good mapping #1
    assert s.writes("freshdesk")  # the other helpdesk is not held up
    report = status.collect(s.store, s.settings)
    assert "zendesk" in report["writeback"]["last_push"]["refused"]
    assert "refused" in status.format_table(report)


def test_a_bulk_job_records_each_tickets_result_and_sends_again_only_the_failed_ones(make: Any) -> None:
    s = make(("zendesk",), writeback_toml([ZENDESK_FRT]), tickets=240,
             fields=(("zendesk", "ticket", "kpi_frt", "decimal"),))
    fake = s.sandbox["zendesk"]
    fake.job_polls = 2  # the job is still "working" at the first two polls
    tickets = s.sandbox.world.sources["zendesk"].tickets
    context(s.store, s.settings.kpis)  # the engine's per-contact facts, brought up to date
    wanted = [r[0] for r in s.store.db.execute(
        "SELECT f.source_id FROM kpi_facts f JOIN contacts c USING (source, source_id) WHERE f.source = 'zendesk'"
        " AND f.frt_s IS NOT NULL AND c.status NOT IN ('closed', 'deleted')")]
    assert len(wanted) > 5
    refused = [int(i) for i in wanted[:3]]
    fake.reject_ticket_updates(refused)
    # Closed in Zendesk after the last sync: the store still thinks it is open.
    closing = tickets[int(wanted[3])]
    s.sandbox.world._status(closing, s.sandbox.world.tick(), "closed")
    options = {"zendesk": {"poll_interval": 0.01}}
    report = push(s.store, s.settings, writer_options=options)
    jobs = [c for c in fake.calls("PUT", "update_many")]
    polls = fake.calls("GET", "job_statuses")
    assert len(jobs) == 1 and len(polls) == 3
    assert {t["id"] for t in jobs[0].body["tickets"]} == {int(i) for i in wanted}
    failed = {r["record_id"]: r["error"] for r in ledger(s.store, "failed")}
    assert set(failed) == {str(i) for i in refused} | {str(closing.id)}
    assert "closed prevents ticket update" in failed[str(closing.id)]
    assert "locked" in failed[str(refused[0])]
    assert report.outcomes["zendesk"].failed == 4 and not report.ok
    assert {r["record_id"] for r in ledger(s.store, "ok")} == {i for i in wanted} - set(failed)
    assert status.collect(s.store, s.settings)["writeback"]["pending"]["zendesk"]["failed"] == 4
    assert "4 failed writes, sent again next push" in status.format_table(status.collect(s.store, s.settings))

    fake.clear_rejections()
    s.clear()
    push(s.store, s.settings, writer_options=options)
    (retry,) = fake.calls("PUT", "update_many")
    assert {t["id"] for t in retry.body["tickets"]} == set(refused) | {closing.id}  # only the failed ones
    assert {r["record_id"] for r in ledger(s.store, "failed")} == {str(closing.id)}

    assert all(r.ok for r in sync_all(s.store, s.settings))  # now the store knows it is closed
    s.clear()
    report = push(s.store, s.settings, writer_options=options)
    assert not s.writes("zendesk") and report.ok
    assert not ledger(s.store, "failed")  # a closed ticket's failure is settled, not pending forever
    assert "failed writes" not in status.format_table(status.collect(s.store, s.settings))


def test_a_429_during_push_waits_and_a_note_of_unknown_outcome_is_never_sent_twice(make: Any) -> None:
    s = make(("freshdesk",), writeback_toml([FRESHDESK_FRT], [("freshdesk", "sla_breached", "Missed the target.")]),
             tickets=320)
    fake = s.sandbox["freshdesk"]
    fake.fail(429, path=r"^/api/v2/tickets/\d+$", method="PUT", headers={"Retry-After": "1"})
    fake.fail(429, path=r"/notes$", method="POST", headers={"Retry-After": "1"})
    fake.fail(500, path=r"/notes$", method="POST", skip=1)  # the second note: an answer nobody can trust
    started = time.monotonic()
    report = push(s.store, s.settings)
    assert time.monotonic() - started >= 2.0  # both 429s waited out their Retry-After
    puts = fake.calls("PUT")
    assert puts[0].status == 429 and puts[1].status == 200 and puts[0].path == puts[1].path
    notes = fake.calls("POST", "/notes$")
    assert [c.status for c in notes[:3]] == [429, 201, 500]
    assert notes[0].path == notes[1].path  # the throttled note was sent again, once accepted
    outcome = report.outcomes["freshdesk"]
    assert outcome.uncertain == 1 and outcome.failed == 0
    (uncertain,) = ledger(s.store, "uncertain")
    assert uncertain["kind"] == "note" and uncertain["record_id"] == notes[2].path.split("/")[4]
    s.clear()
    push(s.store, s.settings)
    assert not [c for c in fake.calls("POST") if c.path.endswith(f"/{uncertain['record_id']}/notes")]
    assert "notes of unknown outcome" in status.format_table(status.collect(s.store, s.settings))


def test_the_budget_caps_write_requests_per_run_and_the_daemon_step_reports_counts(make: Any) -> None:
    s = make(("freshdesk",), writeback_toml([FRESHDESK_FRT, ("freshdesk", "contact", "contacts_30d", "cf_kpi_n")],
                                            budget=7),
             fields=(("freshdesk", "person", "cf_kpi_n", "integer"),))
    step = daemon_push_step(s.settings)
    assert step is not None
    counts = step(s.store, threading.Event())["freshdesk"]
    assert len(s.writes("freshdesk")) == 7
    assert counts["written"] == 7 and counts["failed"] == 0 and counts["deferred"] > 7
    planned = counts["written"] + counts["deferred"]
    s.clear()
    stop = threading.Event()
    stop.set()
    assert step(s.store, stop)["freshdesk"]["written"] == 0 and not s.writes("freshdesk")  # a stop sends nothing
    total = 7
    while True:
        s.clear()
        counts = step(s.store, threading.Event())["freshdesk"]
        assert len(s.writes("freshdesk")) == counts["written"] <= 7
        total += counts["written"]
        if not counts["deferred"]:
            break
    assert total == planned
    s.clear()
    assert step(s.store, threading.Event())["freshdesk"]["written"] == 0 and not s.sandbox["freshdesk"].calls()


def test_fields_shows_mapped_fields_and_explains_what_the_api_cannot_create(make: Any,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    s = make(("intercom",), writeback_toml([("intercom", "conversation", "one_touch", "kpi_one_touch"),
                                            ("intercom", "company", "csat_pct_90d", "kpi_csat")]))
    assert s.cli("fields") == 1
    printed = capsys.readouterr().out
    assert "missing: to create as checkbox" in printed and "missing: to create as number" in printed
    assert s.cli("fields", "--create", "--yes") == 1  # the conversation attribute is left to the admin
    out, err = capsys.readouterr()
    assert "will create:" in out and "created float field 'kpi_csat'" in out
    assert "Create attribute: name 'kpi_one_touch', format boolean (True/false)" in err
    posts = [c.body for c in s.sandbox["intercom"].calls("POST", "^/data_attributes$")]
    assert posts == [{"name": "kpi_csat", "model": "company", "data_type": "float",
                      "description": "csat_pct_90d (helpdesk-kpi)"}]
    s.sandbox.world.define_field("intercom", "ticket", "kpi_one_touch", "checkbox")  # the admin did it
    assert s.cli("fields") == 0


@pytest.mark.parametrize(("section", "message"), [
    ('[[writeback.mappings]]\nhelpdesk = "zendesk"\nobject = "conversation"\nmetric = "sla_met"\nfield = "x"',
     "object 'conversation': zendesk objects are ticket, user, organization"),
    ('[[writeback.mappings]]\nhelpdesk = "intercom"\nobject = "contact"\nmetric = "sla_met"\nfield = "x"',
     "metric 'sla_met' is not a requester metric"),
    ('[[writeback.mappings]]\nhelpdesk = "freshdesk"\nobject = "ticket"\nmetric = "speed"\nfield = "x"',
     "metric 'speed': unknown"),
    ('[[writeback.notes]]\nhelpdesk = "zendesk"\nrule = "repeat_contact"\ntemplate = "{contacts_30d} {oops}"',
     "unknown placeholder {oops}"),
    ('[[writeback.notes]]\nhelpdesk = "zendesk"\nrule = "unhappy"\ntemplate = "x"', "notes.0.rule"),
])
def test_bad_writeback_settings_name_the_key(tmp_path: Path, section: str, message: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f"[writeback]\nenabled = true\n\n{section}\n")
    with pytest.raises(ConfigProblem) as caught:
        load_settings(config)
    assert any(message in f"{key}: {reason}" for key, reason in caught.value.problems), caught.value.problems


def test_the_example_config_maps_valid_metrics() -> None:
    text = (Path(__file__).resolve().parent.parent / "config.example.toml").read_text()
    assert "[writeback]" in text
    import tomllib

    settings = Settings(writeback=tomllib.loads(text)["writeback"])
    assert settings.writeback.mappings and settings.writeback.notes
    assert json.dumps(settings.writeback.model_dump())


@pytest.mark.parametrize(("value", "field_type", "sent"), [
    (12.5, "integer", 13), (12.49, "integer", 12), (0.5, "integer", 1), (3, "number", 3),
    (12.5, "text", "12.5"), (3.0, "text", "3"), (1234567.25, "text", "1234567.25"), (7, "text", "7"),
    (True, "text", "true"), (False, "checkbox", False), ("detractor", "dropdown", "detractor"),
    (None, "checkbox", None),
])
def test_values_are_converted_as_documented(value: Any, field_type: str, sent: Any) -> None:
    from kpi_core.writeback.convert import to_field

    assert to_field(value, field_type) == sent


@pytest.mark.parametrize(("synced", "sent", "field_type", "equal"), [
    ("12.5", 12.5, "number", True), ("13", 13, "integer", True), (13.0, 13, "integer", True),
    (None, False, "checkbox", False), ("true", True, "checkbox", True), ("", None, "text", True),
    (12.5, "12.5", "text", True), ("12.50", 12.5, "number", True), ("x", 1, "integer", False),
])
def test_values_the_helpdesk_hands_back_compare_by_meaning(synced: Any, sent: Any, field_type: str,
                                                           equal: bool) -> None:
    from kpi_core.writeback.convert import same

    assert same(synced, sent, field_type) is equal


def test_a_note_template_reads_n_a_for_what_is_unknown() -> None:
    from kpi_core.writeback.metrics import ContactRecord
    from kpi_core.writeback.planner import render

    contact = ContactRecord("1", "open", None, "2026-01-01T00:00:00Z",
                            {"sla_met": False, "first_response_minutes": 12.5})
    assert render("{first_response_minutes} min, met: {sla_met}, 30d: {contacts_30d}", contact, {}) == \
        "12.5 min, met: no, 30d: n/a"
