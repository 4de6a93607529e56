"""Desired values -> a plan of only the differences, against the ledger and against what the last sync saw.

For each (record, mapped field) the planner compares the value the metric asks for with
the value the last sync stored from the helpdesk (`contacts.custom`, `people.custom`,
`organizations.custom`):
- equal: nothing to do;
- different, but the ledger says this very value was written and the stored copy is still
  the one seen when it was planned: the sync has not yet brought our write back (or the
  object is re-read only daily, as Intercom companies are): nothing to do;
- different otherwise (never written, written and failed, changed since, changed by someone
  in the helpdesk): write.
A metric without a value clears a field only where write-back wrote before. So a sync that
brings our own writes back (they change `updated_at`) never causes another write, and a
push right after a push sends nothing.

Never planned: deleted records, closed contacts of helpdesks where they are read-only
(`WriteFacts.closed_is_read_only`), and notes on
contacts that are already resolved or closed (a note is for an agent who can still act).
A note is planned once per (contact, rule): a note that was written, or that may have been
written (its request failed in a way that leaves it unknown), is never planned again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.base import FieldDef, WriteRequest
from connectors.plugin import WriteLevel as Level
from kpi_core.settings import WritebackNote
from kpi_core.store import Store
from kpi_core.writeback import ledger
from kpi_core.writeback.convert import decimal_string, same, to_field
from kpi_core.writeback.mappings import TEMPLATE_FIELDS, Metric, contact_object, write_facts
from kpi_core.writeback.metrics import ContactRecord, SourceMetrics

OPEN_STATUSES = frozenset({"new", "open", "pending", "on_hold"})
_TABLES = {Level.CONTACT: "contacts", Level.REQUESTER: "people", Level.ORGANIZATION: "organizations"}


@dataclass(frozen=True)
class Target:
    """A mapping resolved against the helpdesk's field definitions."""

    name: str  # how messages name the mapping
    object: str
    metric: Metric
    field: FieldDef


@dataclass(frozen=True)
class Change:
    target: Target
    value: Any  # what is sent
    current: Any  # what the last sync saw
    reason: str


@dataclass
class PlannedWrite:
    object: str
    record_id: str
    changes: list[Change]
    external_id: str | None = None

    def request(self) -> WriteRequest:
        return WriteRequest(self.object, self.record_id, {c.target.field.key: c.value for c in self.changes},
                            external_id=self.external_id)


@dataclass
class PlannedNote:
    object: str
    record_id: str
    rule: str
    body: str
    reason: str

    def request(self) -> WriteRequest:
        return WriteRequest(self.object, self.record_id, note=self.body)


@dataclass
class Plan:
    helpdesk: str
    writes: list[PlannedWrite] = field(default_factory=list)
    notes: list[PlannedNote] = field(default_factory=list)
    unchanged: int = 0  # (record, field) pairs already as wanted
    # Failed writes that are not wanted any more (the ticket closed, the value arrived anyway,
    # the mapping went): settled in the ledger, so they stop showing as pending.
    settled: list[ledger.Key] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(len(w.changes) for w in self.writes) + len(self.notes)

    def keys(self) -> set[ledger.Key]:
        out = {(n.object, n.record_id, ledger.NOTE, n.rule) for n in self.notes}
        out.update((w.object, w.record_id, ledger.FIELD, c.target.field.key) for w in self.writes for c in w.changes)
        return out


def plan(store: Store, helpdesk: str, targets: list[Target], notes: list[WritebackNote],
         metrics: SourceMetrics) -> Plan:
    """The writes and notes `helpdesk` needs now; see the module docstring."""
    out = Plan(helpdesk)
    entries = ledger.load(store, helpdesk)
    out.notes = _notes(helpdesk, notes, metrics, entries)
    facts = write_facts(helpdesk)
    for object, level in facts.objects.items():
        object_targets = [t for t in targets if t.object == object]
        if not object_targets:
            continue
        synced = _synced(store, helpdesk, level)
        key_name = facts.external_keys.get(object)
        external = _external_ids(store, helpdesk, level, key_name) if key_name else {}
        for record_id, values in _records(level, metrics, facts.closed_is_read_only):
            changes = []
            for target in object_targets:
                key = (object, record_id, ledger.FIELD, target.field.key)
                change = _decide(target, values.get(target.metric.name), synced.get(record_id, {}), entries.get(key))
                if change is None:
                    out.unchanged += 1
                else:
                    changes.append(change)
            if changes:
                out.writes.append(PlannedWrite(object, record_id, changes, external.get(record_id)))
    planned = out.keys()
    out.settled = [key for key, entry in entries.items() if entry.status == ledger.FAILED and key not in planned]
    return out


def _records(level: Level, metrics: SourceMetrics,
             closed_is_read_only: bool) -> Iterable[tuple[str, Mapping[str, Any]]]:
    """Records that may be written at this level, the most recent contacts first."""
    if level is Level.CONTACT:
        writable = [c for c in metrics.contacts.values() if not (closed_is_read_only and c.status == "closed")]
        for contact in sorted(writable, key=lambda c: (c.created_at, c.id), reverse=True):
            yield contact.id, contact.metrics
    elif level is Level.REQUESTER:
        yield from sorted(metrics.requesters.items())
    else:
        yield from sorted(metrics.organizations.items())


def _decide(target: Target, wanted: Any, stored: Mapping[str, Any], entry: ledger.Entry | None) -> Change | None:
    kind = target.field.type
    value = to_field(wanted, kind)
    current = stored.get(target.field.key)
    if same(value, current, kind):
        return None
    written = entry is not None and entry.status == ledger.OK and same(entry.value, value, kind)
    if written and entry is not None and same(current, entry.seen, kind):
        return None  # written; the stored copy predates our write
    if wanted is None:
        if entry is None or same(entry.value, value, kind):
            return None  # never wrote here (or already cleared): leave the helpdesk's value alone
        return Change(target, value, current, "no value any more: clear what write-back wrote")
    if entry is None:
        reason = "not written yet"
    elif entry.status != ledger.OK:
        reason = f"sent again after: {entry.error or entry.status}"
    elif same(entry.value, value, kind):
        reason = "changed in the helpdesk since it was written"
    else:
        reason = "the metric changed"
    return Change(target, value, current, reason)


def _notes(helpdesk: str, notes: list[WritebackNote], metrics: SourceMetrics,
           entries: Mapping[ledger.Key, ledger.Entry]) -> list[PlannedNote]:
    wanted = [n for n in notes if n.helpdesk == helpdesk]
    if not wanted:
        return []
    object = contact_object(helpdesk)
    out = []
    contacts = sorted(metrics.contacts.values(), key=lambda c: (c.created_at, c.id), reverse=True)
    for contact in contacts:
        if contact.status not in OPEN_STATUSES:
            continue
        requester = metrics.requesters.get(contact.requester_id or "", {})
        for note in wanted:
            entry = entries.get((object, contact.id, ledger.NOTE, note.rule))
            if entry is not None and entry.status in (ledger.OK, ledger.UNCERTAIN):
                continue
            if not rule_holds(note.rule, contact, requester):
                continue
            reason = f"sent again after: {entry.error}" if entry is not None else "rule met"
            words = metrics.requester_notes.get(contact.requester_id or "", {})
            out.append(PlannedNote(object, contact.id, note.rule, render(note.template, contact, requester, words),
                                   reason))
    return out


def rule_holds(rule: str, contact: ContactRecord, requester: Mapping[str, Any]) -> bool:
    if rule == "repeat_contact":
        return contact.metrics.get("repeat_contact") is True
    if rule == "sla_breached":
        return contact.metrics.get("sla_met") is False
    if rule == "detractor":
        return requester.get("nps_category") == "detractor"
    raise ValueError(f"unknown note rule {rule!r}")


def render(template: str, contact: ContactRecord, requester: Mapping[str, Any],
           words: Mapping[str, str] | None = None) -> str:
    """The note text: the template with the contact's and its requester's metrics filled in, for people.

    `words` (the requester's metrics in words, e.g. last_csat "good" or "4 of 5") win over the raw
    values, and the contact's note-only values (its previous contact) come already in words.
    """
    values = {k: _text(v) for k, v in {**dict.fromkeys(TEMPLATE_FIELDS), **requester, **contact.metrics}.items()}
    values.update(words or {})
    values.update(contact.note_values)
    return template.format(**values)


def _text(value: Any) -> str:
    """A value as a note shows it: yes/no, "n/a" for none, numbers to one decimal (whole from 100 on)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return decimal_string(round(value) if abs(value) >= 100 else round(value, 1))
    if isinstance(value, int):
        return decimal_string(value)
    return str(value)


def _synced(store: Store, helpdesk: str, level: Level) -> dict[str, dict[str, Any]]:
    """Custom field values of every record of this level as the last sync stored them."""
    rows = store.db.execute(f"SELECT source_id, custom FROM [{_TABLES[level]}] WHERE source = ?", [helpdesk])
    out: dict[str, dict[str, Any]] = {}
    for record_id, custom in rows:
        parsed = json.loads(custom) if custom else {}
        out[record_id] = parsed if isinstance(parsed, dict) else {}
    return out


def _external_ids(store: Store, helpdesk: str, level: Level, key_name: str) -> dict[str, str]:
    """Record id -> the other key the API addresses the record by (e.g. a company's `company_id`),
    from the stored payload."""
    rows = store.db.execute(f"SELECT source_id, json_extract(raw, ?) FROM [{_TABLES[level]}] WHERE source = ?",
                            [f"$.{key_name}", helpdesk]).fetchall()
    return {record_id: str(key) for record_id, key in rows if key is not None}
