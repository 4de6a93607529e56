"""Write-back end to end against the sandbox: real HTTP to the three fakes, a real SQLite store.

One sandbox is synced, its fields created with `fields --create` and pushed with `push`;
the requests the fakes logged are then checked against values computed here, straight from
the KPI engine's per-contact facts and the stored survey answers (not through write-back's
own metric code): every mapping type of every helpdesk, notes once per rule on open
contacts only, nothing on closed Zendesk tickets, no status change, no public comment.
Then a second push, and a sync followed by a push, must send nothing at all.
"""

from __future__ import annotations

import csv
import json
import math
import re
import tomllib
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from connectors.sandbox import Sandbox
from kpi_core import cli
from kpi_core.kpis.targets import Targets
from kpi_core.model import SCALES, is_positive_response
from kpi_core.settings import Settings, load_settings
from kpi_core.store import Store, open_store
from kpi_core.surveys import import_csv
from kpi_core.sync import sync_all

SEED = 23
TICKETS = 320
NOW = datetime.now(timezone.utc)

# (helpdesk, object, metric, field, created type): every object of every helpdesk, every kind of
# metric, and the conversions (a number into an integer field and into a text field, a category into
# a dropdown).
MAPPINGS = [
    ("zendesk", "ticket", "first_response_minutes", "kpi_frt", "number"),
    ("zendesk", "ticket", "sla_met", "kpi_sla_met", "checkbox"),
    ("zendesk", "ticket", "agent_touches", "kpi_touches", "integer"),
    ("zendesk", "ticket", "resolution_hours", "kpi_resolution_text", "text"),
    ("zendesk", "user", "contacts_30d", "kpi_contacts_30d", "integer"),
    ("zendesk", "user", "nps_category", "kpi_nps_category", "dropdown"),
    ("zendesk", "user", "last_csat", "kpi_last_csat", "number"),
    ("zendesk", "organization", "csat_pct_90d", "kpi_csat_pct_90d", "number"),
    ("zendesk", "organization", "repeat_contacts_30d", "kpi_repeats_30d", "integer"),
    ("intercom", "conversation", "first_response_minutes", "kpi_frt", "number"),
    ("intercom", "conversation", "repeat_contact", "kpi_repeat_contact", "checkbox"),
    ("intercom", "conversation", "one_touch", "kpi_one_touch", "checkbox"),
    ("intercom", "contact", "last_nps", "kpi_last_nps", "number"),
    ("intercom", "contact", "first_response_minutes_median_90d", "kpi_frt_median_90d", "number"),
    ("intercom", "company", "contacts_30d", "kpi_contacts_30d", "integer"),
    ("freshdesk", "ticket", "first_response_minutes", "cf_kpi_frt_minutes", "integer"),  # the account's own field
    ("freshdesk", "ticket", "reopens", "cf_kpi_reopens", "integer"),
    ("freshdesk", "ticket", "sla_met", "cf_kpi_sla_met", "checkbox"),
    ("freshdesk", "contact", "csat_pct_90d", "cf_kpi_csat_pct", "number"),
    ("freshdesk", "company", "repeat_contacts_30d", "cf_kpi_repeats_30d", "integer"),
]
ROOT = Path(__file__).resolve().parent.parent
# The note example shipped in config.example.toml, exactly as an admin copies it (issue 16, item 3).
SHIPPED_NOTE = tomllib.loads((ROOT / "config.example.toml").read_text())["writeback"]["notes"][0]
NOTES = [
    (SHIPPED_NOTE["helpdesk"], SHIPPED_NOTE["rule"], SHIPPED_NOTE["template"]),
    ("zendesk", "detractor", "Detractor (NPS {last_nps}): route to a senior agent."),
    ("intercom", "sla_breached", "Missed the first-reply target ({first_response_minutes} min)."),
    ("freshdesk", "repeat_contact", "Repeat contact, {previous_contact_ago} after {previous_contact_id}."),
    ("freshdesk", "sla_breached", "SLA missed; agent touches so far: {agent_touches}."),
]
OPEN = {"new", "open", "pending", "on_hold"}


# --- setting up ------------------------------------------------------------------------------


def writeback_toml(mappings: list[tuple[str, ...]], notes: list[tuple[str, str, str]], *, enabled: bool = True,
                   budget: int = 1000) -> str:
    lines = ["[writeback]", f"enabled = {'true' if enabled else 'false'}", f"max_writes_per_run = {budget}", ""]
    for helpdesk, object, metric, name, *_ in mappings:
        lines += ["[[writeback.mappings]]", f'helpdesk = "{helpdesk}"', f'object = "{object}"', f'metric = "{metric}"',
                  f'field = "{name}"', ""]
    for helpdesk, rule, template in notes:
        lines += ["[[writeback.notes]]", f'helpdesk = "{helpdesk}"', f'rule = "{rule}"', f'template = "{template}"', ""]
    return "\n".join(lines)


def write_config(path: Path, sandbox: Sandbox, toml: str) -> Path:
    config = path / "helpdesk-kpi.toml"
    config.write_text(sandbox.config_toml(str(path / "store.sqlite")) + "\n" + toml)
    return config


def import_nps(store: Store, path: Path, helpdesk: str, requesters: list[str]) -> None:
    """NPS answers for some customers (no helpdesk API has NPS: they come from a survey tool's export)."""
    rows = [{"id": f"{helpdesk}-{n}", "score": (2, 6, 8, 9, 10, 0)[n % 6], "helpdesk": helpdesk,
             "requester_id": requester,
             "responded_at": (NOW - timedelta(days=3 + n % 20)).strftime("%Y-%m-%dT%H:%M:%SZ")}
            for n, requester in enumerate(requesters)]
    file = path / f"nps-{helpdesk}.csv"
    with file.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    import_csv(store, file, kind="nps", scale="0-10")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Synced, fields created, pushed once: everything the read-only tests look at."""
    path = tmp_path_factory.mktemp("writeback")
    sandbox = Sandbox.generate(seed=SEED, tickets=TICKETS)
    sandbox.start()
    # What admins do by hand: a dropdown with the NPS categories, and Intercom's conversation
    # attributes (its API cannot create those).
    sandbox.world.define_field("zendesk", "person", "kpi_nps_category", "dropdown", "NPS category",
                               ("promoter", "passive", "detractor"))
    sandbox.world.define_field("zendesk", "ticket", "", "text", "kpi_resolution_text")  # Zendesk: keyed by id
    for _, _object, _, name, kind in [m for m in MAPPINGS if m[:2] == ("intercom", "conversation")]:
        sandbox.world.define_field("intercom", "ticket", name, {"number": "decimal"}.get(kind, kind), name)
    config = write_config(path, sandbox, writeback_toml(MAPPINGS, NOTES))
    settings = load_settings(config)
    store = open_store(settings.store.path)
    assert all(r.ok for r in sync_all(store, settings))
    for helpdesk in ("zendesk", "intercom"):
        requesters = [r[0] for r in store.db.execute(
            "SELECT DISTINCT c.requester_id FROM contacts c JOIN people p ON p.source = c.source"
            " AND p.source_id = c.requester_id WHERE c.source = ? AND c.status != 'deleted' ORDER BY 1 LIMIT 40",
            [helpdesk])]
        import_nps(store, path, helpdesk, requesters)
    replies_before = {(r[0], r[1]): (r[2], r[3]) for r in store.db.execute(
        "SELECT source, source_id, agent_replies, first_agent_reply_at FROM contacts")}
    for fake in sandbox.fakes.values():
        fake.clear_log()
    fields_exit = cli.main(["fields", "--create", "--yes", "--config", str(config)])
    created = {name: list(fake.calls()) for name, fake in sandbox.fakes.items()}
    for fake in sandbox.fakes.values():
        fake.clear_log()
    push_exit = cli.main(["push", "--config", str(config)])
    pushed = {name: list(fake.calls()) for name, fake in sandbox.fakes.items()}
    yield {"sandbox": sandbox, "store": store, "settings": settings, "config": config, "fields_exit": fields_exit,
           "created": created, "push_exit": push_exit, "pushed": pushed, "replies_before": replies_before}
    store.close()
    sandbox.stop()


# --- expected values, from the engine's facts ----------------------------------------------------


def expected(store: Store, settings: Settings, helpdesk: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Per-record metrics by level, recomputed from kpi_facts, contacts and survey_responses."""
    facts = [dict(r) for r in store.db.query(
        "SELECT f.*, c.status, c.requester_id, c.organization_id FROM kpi_facts f JOIN contacts c"
        " ON c.source = f.source AND c.source_id = f.source_id WHERE f.source = ? AND f.is_deleted = 0", [helpdesk])]
    targets = Targets(settings.kpis.targets)
    window = settings.kpis.fcr_window_days * 86400
    now = int(NOW.timestamp())
    contacts = {}
    for f in facts:
        sl = targets.channel_frt_minutes(f["channel"]) * 60
        sla = None
        if f["start_epoch"] is not None and not f["bot_only"]:
            if f["frt_s"] is not None:
                sla = f["frt_s"] <= sl
            elif now - f["start_epoch"] > sl:
                sla = False
        created = _epoch(f["created_at"])
        repeat = None
        if f["requester"] is not None and f["start_epoch"] is not None:
            repeat = any(g["requester"] == f["requester"] and g["start_epoch"] is not None
                         and (g["created_at"], g["source_id"]) < (f["created_at"], f["source_id"])
                         and _epoch(g["created_at"]) >= created - window for g in facts)
        resolved = f["first_resolved_at"] is not None
        contacts[f["source_id"]] = {
            "_status": f["status"],
            "first_response_minutes": _r(f["frt_s"] / 60) if f["frt_s"] is not None else None,
            "resolution_hours": _r(f["res_s"] / 3600) if f["res_s"] is not None else None,
            "agent_touches": f["agent_replies"], "reopens": f["reopens"],
            "one_touch": ((f["agent_replies"] == 1 and f["reopens"] == 0)
                          if resolved and f["agent_replies"] >= 1 else None),
            "sla_met": sla, "repeat_contact": repeat,
        }
    answers = [dict(r) for r in store.db.query(
        "SELECT s.*, coalesce(s.requester_id, c.requester_id) AS who, coalesce(c.organization_id, p.organization_id)"
        " AS org FROM survey_responses s LEFT JOIN contacts c ON c.source = s.source AND c.source_id = s.contact_id"
        " LEFT JOIN people p ON p.source = s.source AND p.source_id = coalesce(s.requester_id, c.requester_id)"
        " WHERE s.source = ? AND coalesce(c.status, '') != 'deleted' ORDER BY s.created_at, s.source_id", [helpdesk])]
    customers = {r[0] for r in store.db.execute("SELECT source_id FROM people WHERE source = ? AND role = 'customer'",
                                                [helpdesk])}
    orgs = {r[0] for r in store.db.execute("SELECT source_id FROM organizations WHERE source = ?", [helpdesk])}
    requesters = {r: _people([f for f in facts if f["requester_id"] == r], [a for a in answers if a["who"] == r], True)
                  for r in {f["requester_id"] for f in facts} if r in customers}
    organizations = {o: _people([f for f in facts if f["organization_id"] == o], [a for a in answers if a["org"] == o],
                                False) for o in {f["organization_id"] for f in facts} if o in orgs}
    return {"contact": contacts, "requester": requesters, "organization": organizations}


def _positive(answer: dict[str, Any]) -> bool | None:
    """The catalogue's rule on a neutral scale; a connector's own coded scale: the flag it stored."""
    known = is_positive_response("csat", answer["score"], answer["scale"])
    if known is None and answer["scale"] not in SCALES and answer["is_positive"] is not None:
        return bool(answer["is_positive"])
    return known


def _people(facts: list[dict[str, Any]], answers: list[dict[str, Any]], single: bool) -> dict[str, Any]:
    d30, d90 = _iso(NOW - timedelta(days=30)), _iso(NOW - timedelta(days=90))
    recent = [f for f in facts if f["created_at"] >= d30]
    named = [f["requester_id"] for f in recent if f["requester_id"]]
    frts = sorted(f["frt_s"] for f in facts if f["created_at"] >= d90 and f["frt_s"] is not None)
    csat = [a for a in answers if a["kind"] == "csat"]
    rated = [_positive(a) for a in csat if a["created_at"] >= d90]
    rated = [p for p in rated if p is not None]
    nps = [a["score"] for a in answers if a["kind"] == "nps"]
    return {
        "contacts_30d": len(recent),
        "repeat_contacts_30d": max(len(recent) - 1, 0) if single else len(named) - len(set(named)),
        "last_csat": csat[-1]["score"] if csat else None,
        "csat_pct_90d": _r(100 * sum(rated) / len(rated)) if rated else None,
        "last_nps": nps[-1] if nps else None,
        "nps_category": (None if not nps
                         else "promoter" if nps[-1] >= 9 else "detractor" if nps[-1] <= 6 else "passive"),
        "first_response_minutes_median_90d": _r(frts[math.ceil(len(frts) / 2) - 1] / 60) if frts else None,
    }


def as_written(value: Any, kind: str) -> Any:
    """The documented conversion of a metric value into a field of `kind`."""
    if kind == "integer":
        return math.floor(value + 0.5)
    if kind == "text":  # the decimal string: two decimals at most here, no trailing zeros
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return value


def _r(value: float) -> float:
    return round(value, 2)


def _epoch(iso: str) -> int:
    return int(datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp())


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- reading the request logs ------------------------------------------------------------------


def written_values(world: Any, helpdesk: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(object, record id) -> {field key or title: value} from the logged write requests."""
    out: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    fields = _field_names(world, helpdesk)
    for call in world["pushed"][helpdesk]:
        body = call.body
        if helpdesk == "zendesk":
            if call.path.endswith("update_many.json"):
                for t in body["tickets"]:
                    out[("ticket", str(t["id"]))].update({fields[str(f["id"])]: f["value"] for f in t["custom_fields"]})
            elif call.method == "PUT" and "/users/" in call.path:
                out[("user", _id(call.path))].update(body["user"]["user_fields"])
            elif call.method == "PUT" and "/organizations/" in call.path:
                out[("organization", _id(call.path))].update(body["organization"]["organization_fields"])
        elif helpdesk == "intercom":
            if call.method == "PUT" and call.path.startswith("/conversations/"):
                out[("conversation", _id(call.path))].update(body["custom_attributes"])
            elif call.method == "PUT" and call.path.startswith("/contacts/"):
                out[("contact", _id(call.path))].update(body["custom_attributes"])
            elif call.method == "POST" and call.path == "/companies":
                company = next(r[0] for r in world["store"].db.execute(
                    "SELECT source_id FROM organizations WHERE source = 'intercom'"
                    " AND json_extract(raw, '$.company_id') = ?", [body["company_id"]]))
                out[("company", company)].update(body["custom_attributes"])
        elif call.method == "PUT" and "notes" not in call.path:
            object = {"tickets": "ticket", "contacts": "contact", "companies": "company"}[call.path.split("/")[3]]
            out[(object, _id(call.path))].update(body["custom_fields"])
    return out


def _field_names(world: Any, helpdesk: str) -> dict[str, str]:
    """Zendesk ticket field id -> title (mappings name created ticket fields by title)."""
    if helpdesk != "zendesk":
        return {}
    return {str(f.id): f.title for f in world["sandbox"].world.fields_of("zendesk", "ticket")}


def _id(path: str) -> str:
    return re.findall(r"/([0-9a-z]+)(?:\.json)?$", path)[0]


def notes_sent(world: Any, helpdesk: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for call in world["pushed"][helpdesk]:
        if helpdesk == "zendesk" and call.method == "PUT" and re.search(r"/tickets/\d+\.json$", call.path):
            out.append((_id(call.path), call.body))
        elif helpdesk == "intercom" and call.path.endswith("/reply"):
            out.append((call.path.split("/")[2], call.body))
        elif helpdesk == "freshdesk" and call.path.endswith("/notes"):
            out.append((call.path.split("/")[4], call.body))
    return out


LEVEL = {"ticket": "contact", "conversation": "contact", "user": "requester", "contact": "requester",
         "organization": "organization", "company": "organization"}


# --- the tests ---------------------------------------------------------------------------------------


def test_fields_are_created_with_the_right_types_and_conversation_attributes_are_left_to_the_admin(world: Any) -> None:
    assert world["fields_exit"] == 0
    created = {name: [c for c in calls if c.method == "POST"] for name, calls in world["created"].items()}
    zendesk = {(c.path.split("/")[3], json.dumps(c.body, sort_keys=True)) for c in created["zendesk"]}
    assert ("ticket_fields.json", json.dumps({"ticket_field": {"description": "agent_touches (helpdesk-kpi)",
                                                                "title": "kpi_touches", "type": "integer"}},
                                               sort_keys=True)) in zendesk
    types = {json.dumps(c.body) for c in created["zendesk"]}
    assert any('"type": "checkbox", "title": "kpi_sla_met"' in t for t in types)
    assert any('"type": "decimal", "title": "kpi_frt"' in t for t in types)
    assert any('"user_field": {"type": "integer", "title": "contacts_30d (helpdesk-kpi)", "key": "kpi_contacts_30d"}'
               in t for t in types)
    assert not any("kpi_nps_category" in t or "kpi_resolution_text" in t for t in types)  # the admin's own fields
    intercom = [c.body for c in created["intercom"]]
    assert {(b["model"], b["name"], b["data_type"]) for b in intercom} == {
        ("contact", "kpi_last_nps", "float"), ("contact", "kpi_frt_median_90d", "float"),
        ("company", "kpi_contacts_30d", "integer")}
    freshdesk = {(c.path, c.body["label"], c.body["type"]) for c in created["freshdesk"]}
    assert freshdesk == {("/api/v2/admin/ticket_fields", "kpi_reopens", "custom_number"),
                         ("/api/v2/admin/ticket_fields", "kpi_sla_met", "custom_checkbox"),
                         ("/api/v2/admin/contact_fields", "kpi_csat_pct", "custom_decimal"),
                         ("/api/v2/admin/company_fields", "kpi_repeats_30d", "custom_number")}


@pytest.mark.parametrize("helpdesk", ["zendesk", "intercom", "freshdesk"])
def test_written_values_equal_the_engines_per_record_metrics(world: Any, helpdesk: str) -> None:
    assert world["push_exit"] == 0
    want = expected(world["store"], world["settings"], helpdesk)
    written = written_values(world, helpdesk)
    closed_ok = helpdesk != "zendesk"
    checked = 0
    for _, object, metric, name, kind in [m for m in MAPPINGS if m[0] == helpdesk]:
        records = want[LEVEL[object]]
        if LEVEL[object] == "contact":
            records = {k: v for k, v in records.items() if closed_ok or v["_status"] != "closed"}
        wanted = {rid: as_written(v[metric], kind) for rid, v in records.items() if v[metric] is not None}
        got = {rid: values[name] for (obj, rid), values in written.items() if obj == object and name in values}
        assert got == wanted, f"{helpdesk} {object} {metric}"
        assert wanted, f"{helpdesk} {object} {metric}: the sandbox should give some values"
        checked += len(got)
    assert checked > 50


def test_nothing_touches_a_closed_zendesk_ticket_or_anything_but_mapped_fields(world: Any) -> None:
    tickets = world["sandbox"].world.sources["zendesk"].tickets
    for call in world["pushed"]["zendesk"]:
        if call.method == "GET":
            continue
        if call.path.endswith("update_many.json"):
            assert all(set(t) == {"id", "custom_fields"} for t in call.body["tickets"])
            ids = [t["id"] for t in call.body["tickets"]]
            assert len(ids) <= 100
        elif "/tickets/" in call.path:
            note_body = call.body["ticket"]["comment"]["body"]
            assert call.body == {"ticket": {"comment": {"body": note_body, "public": False}}}
            ids = [int(_id(call.path))]
        else:
            assert set(call.body) in ({"user"}, {"organization"})
            assert set(next(iter(call.body.values()))) <= {"user_fields", "organization_fields"}
            continue
        assert all(tickets[i].status != "closed" for i in ids)
        assert call.status == 200
    for call in world["pushed"]["intercom"]:
        if call.method != "GET":
            assert set(call.body) <= {"custom_attributes", "company_id", "message_type", "type", "admin_id", "body"}
            assert call.body.get("message_type", "note") == "note"
    for call in world["pushed"]["freshdesk"]:
        if call.method != "GET":
            assert set(call.body) in ({"custom_fields"}, {"body", "private"})
            assert call.body.get("private", True) is True
    updates = [c for calls in world["pushed"].values() for c in calls if c.method != "GET"]
    assert updates and all(c.status in (200, 201) for c in updates)


@pytest.mark.parametrize("helpdesk", ["zendesk", "intercom", "freshdesk"])
def test_notes_go_once_per_rule_on_open_contacts_and_are_private(world: Any, helpdesk: str) -> None:
    want = expected(world["store"], world["settings"], helpdesk)
    rules = [(rule, template) for h, rule, template in NOTES if h == helpdesk]
    expected_notes = []
    for cid, c in want["contact"].items():
        if c["_status"] not in OPEN:
            continue
        requester = want["requester"].get(_requester(world["store"], helpdesk, cid), {})
        for rule, _ in rules:
            if (rule == "repeat_contact" and c["repeat_contact"]) \
                    or (rule == "sla_breached" and c["sla_met"] is False) \
                    or (rule == "detractor" and requester.get("nps_category") == "detractor"):
                expected_notes.append(cid)
    sent = notes_sent(world, helpdesk)
    assert sorted(cid for cid, _ in sent) == sorted(expected_notes)
    assert expected_notes, f"{helpdesk}: the sandbox should give some notes"
    world_tickets = world["sandbox"].world.sources[helpdesk].tickets
    for cid, _body in sent:
        note = world_tickets[int(cid)].messages[-1]
        assert note.public is False and note.role == "agent"
        assert "n/a" in note.body or any(ch.isdigit() for ch in note.body)


def test_the_shipped_note_example_writes_notes_that_agree_with_the_ticket(world: Any) -> None:
    """The example of config.example.toml names the previous contact of the same customer, opened within the
    FCR window before this one, how long before in words, and the latest CSAT in words on its own scale."""
    assert (SHIPPED_NOTE["helpdesk"], SHIPPED_NOTE["rule"]) == ("zendesk", "repeat_contact")
    store, window = world["store"], world["settings"].kpis.fcr_window_days * 86400
    sent = notes_sent(world, "zendesk")
    repeat_notes = [(cid, body["ticket"]["comment"]["body"]) for cid, body in sent
                    if body["ticket"]["comment"]["body"].startswith("Repeat contact")]
    assert repeat_notes
    pattern = re.compile(r"Repeat contact: this customer's previous contact #(\d+) was opened (\d+) (day|hour|minute)s?"
                         r" before this one\. Their latest CSAT: (good|bad|no answer yet|\d of \d+)\.")
    unit = {"day": 86400, "hour": 3600, "minute": 60}
    for cid, text in repeat_notes:
        found = pattern.fullmatch(text)
        assert found, text
        previous, count, per = found.group(1), int(found.group(2)), unit[found.group(3)]
        this = _contact(store, cid)
        before = _contact(store, previous)
        assert before["requester_id"] == this["requester_id"], text
        gap = _epoch(this["created_at"]) - _epoch(before["created_at"])
        assert 0 <= gap <= window and count * per <= gap < (count + 1) * per, (text, gap)
        # No customer-started contact of the same requester lies between the two.
        between = store.db.execute(
            "SELECT count(*) FROM kpi_facts WHERE source = 'zendesk' AND requester = ? AND start_epoch IS NOT NULL"
            " AND is_deleted = 0 AND created_at > ? AND created_at < ?",
            [f"zendesk:{this['requester_id']}", before["created_at"], this["created_at"]]).fetchone()[0]
        assert between == 0, text
        assert found.group(4) == _latest_csat_words(store, this["requester_id"]), text
    assert "CSAT 1" not in " ".join(text for _, text in repeat_notes)


def _contact(store: Store, contact_id: str) -> dict[str, Any]:
    return dict(next(store.db.query("SELECT * FROM contacts WHERE source = 'zendesk' AND source_id = ?",
                                    [contact_id])))


def _latest_csat_words(store: Store, requester: str) -> str:
    rows = list(store.db.query(
        "SELECT s.score, s.scale FROM survey_responses s LEFT JOIN contacts c ON c.source = s.source"
        " AND c.source_id = s.contact_id WHERE s.source = 'zendesk' AND s.kind = 'csat'"
        " AND coalesce(s.requester_id, c.requester_id) = ? AND coalesce(c.status, '') NOT IN ('deleted', 'merged')"
        " ORDER BY s.created_at DESC, s.source_id DESC LIMIT 1", [requester]))
    if not rows:
        return "no answer yet"
    score, scale = rows[0]["score"], rows[0]["scale"]
    if scale == "good_bad":
        return "good" if score >= 1 else "bad"
    return f"{int(score)} of {scale.split('-')[1]}"


def test_note_values_read_as_people_write_them() -> None:
    from kpi_core.writeback.metrics import ContactRecord, ago, csat_words
    from kpi_core.writeback.planner import render

    assert [csat_words(1, "good_bad", 1), csat_words(0, "good_bad", 0), csat_words(4, "1-5", 1),
            csat_words(8, "0-10", 0), csat_words(2, "1-3", 0), csat_words(103, "freshdesk", 1),
            csat_words(100, "freshdesk", 0)] == ["good", "bad", "4 of 5", "8 of 10", "2 of 3", "positive",
                                                 "not positive"]
    assert [ago(59), ago(3600 * 5 + 59), ago(86400 * 2 + 7200), ago(86400)] == \
        ["1 minute", "5 hours", "2 days", "1 day"]
    contact = ContactRecord("9", "open", "7", "2026-01-01T00:00:00Z",
                            {"first_response_minutes": 1234.56, "resolution_hours": 2.345, "repeat_contact": True},
                            {"previous_contact_id": "#8", "previous_contact_ago": "2 days"})
    text = render("{first_response_minutes} min, {resolution_hours} h, repeat {repeat_contact}, after"
                  " {previous_contact_id} ({previous_contact_ago}); CSAT {last_csat}, {csat_pct_90d} %", contact,
                  {"last_csat": 1, "csat_pct_90d": 83.33333}, {"last_csat": "good"})
    assert text == "1235 min, 2.3 h, repeat yes, after #8 (2 days); CSAT good, 83.3 %"


def _requester(store: Store, helpdesk: str, contact_id: str) -> str | None:
    row = store.db.execute("SELECT requester_id FROM contacts WHERE source = ? AND source_id = ?",
                           [helpdesk, contact_id]).fetchone()
    return row[0] if row else None


def test_a_second_push_and_a_push_after_a_sync_send_nothing(world: Any, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox, store, config = world["sandbox"], world["store"], str(world["config"])
    for fake in sandbox.fakes.values():
        fake.clear_log()
    assert cli.main(["push", "--config", config]) == 0
    assert {name: len(fake.calls()) for name, fake in sandbox.fakes.items()} == {n: 0 for n in sandbox.fakes}
    results = sync_all(store, world["settings"])
    assert all(r.ok for r in results)
    # The sync brought our own writes back: the stored custom values now hold them.
    frt_field = next(str(f.id) for f in sandbox.world.fields_of("zendesk", "ticket") if f.title == "kpi_frt")
    stored = {r[0] for r in store.db.execute(
        "SELECT source_id FROM contacts WHERE source = 'zendesk' AND json_extract(custom, ?) IS NOT NULL",
        [f'$."{frt_field}"'])}
    assert stored and len(stored) >= len([1 for (o, _), v in written_values(world, "zendesk").items()
                                          if o == "ticket" and "kpi_frt" in v])
    for fake in sandbox.fakes.values():
        fake.clear_log()
    capsys.readouterr()
    assert cli.main(["push", "--config", config]) == 0
    assert {name: len(fake.calls()) for name, fake in sandbox.fakes.items()} == {n: 0 for n in sandbox.fakes}
    printed = capsys.readouterr().out
    assert "wrote 0 of 0 planned" in printed


def test_our_private_notes_come_back_as_private_messages_not_agent_replies(world: Any) -> None:
    store = world["store"]
    assert all(r.ok for r in sync_all(store, world["settings"]))
    noted = [(h, cid) for h in ("zendesk", "intercom", "freshdesk") for cid, _ in notes_sent(world, h)]
    assert noted
    for helpdesk, cid in noted:
        note = world["sandbox"].world.sources[helpdesk].tickets[int(cid)].messages[-1]
        at = _iso(datetime.fromtimestamp(note.created_at, timezone.utc))
        stored = store.db.execute("SELECT public FROM messages WHERE source = ? AND contact_id = ? AND created_at = ?",
                                  [helpdesk, cid, at]).fetchall()
        assert stored == [(0,)], (helpdesk, cid)
        now = store.db.execute("SELECT agent_replies, first_agent_reply_at FROM contacts WHERE source = ?"
                               " AND source_id = ?", [helpdesk, cid]).fetchone()
        assert tuple(now) == world["replies_before"][(helpdesk, cid)]
