"""The write-back vocabulary: which objects each helpdesk has, which metrics fit which object, note rules.

A mapping (`[[writeback.mappings]]`) sends one per-record metric into one custom field:
- contact metrics go on the contact itself (e.g. a ticket or a conversation);
- requester metrics on the customer (a user or contact);
- organization metrics on the company (an organization or company).
Which object of a helpdesk is which is that connector's `WriteFacts` (its plugin). The
metrics themselves are defined in `metrics.py`.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from connectors import registry
from connectors.base import FieldDef
from connectors.plugin import WriteFacts
from connectors.plugin import WriteLevel as Level


class Kind(StrEnum):
    """What a metric's values are, which decides the fields it may go into (see convert.py)."""

    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    CATEGORY = "category"


@dataclass(frozen=True)
class Metric:
    name: str
    levels: frozenset[Level]
    kind: Kind
    description: str
    values: tuple[str, ...] = ()  # a category's possible values
    needs_business_hours: bool = False


def _m(name: str, levels: set[Level], kind: Kind, description: str, **extra: object) -> Metric:
    return Metric(name, frozenset(levels), kind, description, **extra)  # type: ignore[arg-type]


_C, _PEOPLE, _CUSTOMER = {Level.CONTACT}, {Level.REQUESTER, Level.ORGANIZATION}, {Level.REQUESTER}
NPS_CATEGORIES: Final = ("promoter", "passive", "detractor")

METRICS: Final[dict[str, Metric]] = {m.name: m for m in (
    _m("first_response_minutes", _C, Kind.NUMBER, "minutes from the first customer message to the first public"
       " human-agent reply (the catalogue's first response)"),
    _m("first_response_minutes_bh", _C, Kind.NUMBER, "the same in business time", needs_business_hours=True),
    _m("resolution_hours", _C, Kind.NUMBER, "hours from creation to the first resolution"),
    _m("agent_touches", _C, Kind.INTEGER, "public human-agent replies"),
    _m("one_touch", _C, Kind.BOOLEAN, "resolved with exactly one agent reply and no reopen (resolved contacts"
       " with at least one agent reply)"),
    _m("sla_met", _C, Kind.BOOLEAN, "first reply within the channel's service-level target (unanswered past it:"
       " false; still within it, or bot-only: no value)"),
    _m("reopens", _C, Kind.INTEGER, "times the contact left a resolved state"),
    _m("repeat_contact", _C, Kind.BOOLEAN, "the requester opened another contact in the fcr_window_days before"
       " this one"),
    _m("contacts_30d", _PEOPLE, Kind.INTEGER, "contacts created in the last 30 days"),
    _m("repeat_contacts_30d", _PEOPLE, Kind.INTEGER, "contacts minus distinct requesters over the last 30 days"
       " (the repeat-contact rate's numerator)"),
    _m("last_csat", _PEOPLE, Kind.NUMBER, "score of the latest CSAT answer, on its own scale"),
    _m("csat_pct_90d", _PEOPLE, Kind.NUMBER, "positive CSAT answers / all CSAT answers of the last 90 days, in %"),
    _m("last_nps", _PEOPLE, Kind.NUMBER, "the latest NPS answer on 0-10"),
    _m("nps_category", _PEOPLE, Kind.CATEGORY, "promoter (9-10), passive (7-8) or detractor (0-6) by the latest"
       " NPS answer", values=NPS_CATEGORIES),
    _m("first_response_minutes_median_90d", _PEOPLE, Kind.NUMBER, "median first response of the contacts"
       " created in the last 90 days, in minutes"),
    # From the order feed (customers matched by their keyed e-mail hash or an explicit customer-id map).
    _m("orders_90d", _CUSTOMER, Kind.INTEGER, "the customer's orders (not cancelled) placed in the last 90 days"),
    _m("last_order_days_ago", _CUSTOMER, Kind.INTEGER, "whole days since the customer's latest order (not"
       " cancelled)"),
    _m("clv_90d", _CUSTOMER, Kind.NUMBER, "the customer's order value of the last 90 days, refunds of the period"
       " subtracted at their own dates, in the shop's currency"),
)}

def write_facts(helpdesk: str) -> WriteFacts:
    """The write side of a registered helpdesk; ValueError when it has none."""
    found = registry.plugins().get(helpdesk)
    if found is None or found.write_facts is None:
        raise ValueError(f"unknown helpdesk {helpdesk!r}; writable: {', '.join(registry.writable())}")
    return found.write_facts


def objects(helpdesk: str) -> dict[str, Level]:
    """The helpdesk's writable objects and the level of metrics each takes."""
    return dict(write_facts(helpdesk).objects)


def contact_object(helpdesk: str) -> str:
    """The object a helpdesk calls a contact (notes go there)."""
    found = write_facts(helpdesk).object_for(Level.CONTACT)
    if found is None:
        raise ValueError(f"{helpdesk} has no contact object to write notes on")
    return found


@dataclass(frozen=True)
class Rule:
    name: str
    description: str


RULES: Final[dict[str, Rule]] = {r.name: r for r in (
    Rule("repeat_contact", "the contact is a repeat contact (repeat_contact)"),
    Rule("detractor", "the requester's latest NPS answer makes them a detractor (nps_category)"),
    Rule("sla_breached", "the contact missed its service-level target (sla_met is false)"),
)}
# What only a note may name (a note is about one contact, read by an agent): not metrics, so no field takes them.
NOTE_FIELDS: Final[dict[str, str]] = {
    "previous_contact_id": "the customer's previous contact before this one, e.g. #4711 (n/a: none)",
    "previous_contact_ago": "how long before this one that previous contact was opened, e.g. 2 days",
}
# A note template may use the contact's metrics, its requester's, and the note-only fields.
TEMPLATE_FIELDS: Final = frozenset(
    {n for n, m in METRICS.items() if m.levels & {Level.CONTACT, Level.REQUESTER}} | set(NOTE_FIELDS))


class MappingError(Exception):
    """A mapping or note cannot be carried out as configured (says which one and why)."""


class FieldMissing(MappingError):
    """The helpdesk has no field by the name a mapping gives (`fields --create` can make it)."""


def check_mapping(helpdesk: str, object: str, metric: str) -> None:
    """Raise ValueError when the object is not the helpdesk's or the metric does not fit it."""
    known = objects(helpdesk)
    if object not in known:
        raise ValueError(f"object {object!r}: {helpdesk} objects are {', '.join(known)}")
    found = METRICS.get(metric)
    if found is None:
        raise ValueError(f"metric {metric!r}: unknown; per-record metrics are {', '.join(METRICS)}")
    level = known[object]
    if level not in found.levels:
        fitting = [n for n, m in METRICS.items() if level in m.levels]
        raise ValueError(f"metric {metric!r} is not a {level.value} metric; a {helpdesk} {object} takes"
                         f" {', '.join(fitting)}")


def check_template(template: str) -> None:
    """Raise ValueError when the template is not a format string over the known metrics."""
    try:
        parts = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                 if name is not None]
    except ValueError as exc:
        raise ValueError(f"not a valid template ({exc}); write {{metric}} for a value, {{{{ for a brace") from None
    names = [name for name, _, _ in parts]
    formatted = [name for name, spec, conversion in parts if spec or conversion]
    if formatted:
        raise ValueError(f"{{{formatted[0]}}}: write placeholders without a format; values are formatted for you")
    unknown = sorted({n for n in names if n not in TEMPLATE_FIELDS})
    if unknown:
        raise ValueError(f"unknown placeholder {', '.join('{' + n + '}' for n in unknown)};"
                         f" known: {', '.join(sorted(TEMPLATE_FIELDS))}")


def describe(index: int, helpdesk: str, object: str, metric: str, field: str) -> str:
    """How a message names a mapping: its place in the file and what it says."""
    return f"[[writeback.mappings]] #{index + 1} ({helpdesk} {object} {metric} -> field {field!r})"


def resolve_field(name: str, wanted: str, definitions: list[FieldDef]) -> FieldDef:
    """The field a mapping names, by its key (or id), else by its title; MappingError if absent or ambiguous."""
    by_key = [d for d in definitions if d.key == wanted]
    found = by_key or [d for d in definitions if d.title == wanted]
    if not found:
        raise FieldMissing(f"{name}: the helpdesk has no such field; `helpdesk-kpi fields --create` creates it")
    if len(found) > 1:
        keys = ", ".join(d.key for d in found)
        raise MappingError(f"{name}: {len(found)} fields are titled {wanted!r} ({keys}); name one by its id or key")
    if not found[0].writable:
        raise MappingError(f"{name}: the field is not a custom field the API may write ({found[0].vendor_type})")
    return found[0]
