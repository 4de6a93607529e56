"""Mapped fields against the helpdesk's field definitions: check them, and create the missing ones.

Definitions are read through the helpdesk's API and cached in the store for a day
(`ledger.FIELDS_MAX_AGE`), so a push that has nothing to write sends no request at all;
`helpdesk-kpi fields` always reads them afresh, and a failed write drops the cache.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.base import FieldDef, FieldNotCreatable, FieldSpec, Writer
from connectors.plugin import WriteLevel as Level
from kpi_core.settings import Settings, WritebackMapping
from kpi_core.store import Store
from kpi_core.writeback import ledger
from kpi_core.writeback.convert import CREATE_TYPE, mismatch
from kpi_core.writeback.mappings import (
    METRICS,
    FieldMissing,
    MappingError,
    Metric,
    describe,
    objects,
    resolve_field,
)
from kpi_core.writeback.planner import Target


@dataclass
class MappedField:
    """One mapping of a helpdesk, the field it resolved to, and what is wrong, if anything."""

    index: int
    mapping: WritebackMapping
    metric: Metric
    name: str
    field: FieldDef | None = None
    problem: str | None = None
    missing: bool = False


@dataclass
class Created:
    mapped: MappedField
    field: FieldDef | None
    message: str  # what happened, or what the admin must do by hand


def definitions(store: Store, writer: Writer, helpdesk: str, object: str, *, refresh: bool = False) -> list[FieldDef]:
    """The helpdesk's fields on `object`: from the store's cache unless stale or `refresh`."""
    if not refresh:
        cached = ledger.cached_definitions(store, helpdesk, object)
        if cached is not None:
            return cached
    found = writer.field_definitions(object)
    ledger.cache_definitions(store, helpdesk, object, found)
    return found


def check(store: Store, settings: Settings, helpdesk: str, writer: Writer, *,
          refresh: bool = False) -> list[MappedField]:
    """Every mapping of `helpdesk`, resolved against the field definitions and type-checked."""
    business_hours = bool(settings.kpis.business_hours)
    read: dict[str, list[FieldDef]] = {}  # each object's definitions once per check
    out = []
    for index, mapping in enumerate(settings.writeback.mappings):
        if mapping.helpdesk != helpdesk:
            continue
        metric = METRICS[mapping.metric]
        mapped = MappedField(index, mapping, metric, describe(index, helpdesk, mapping.object, mapping.metric,
                                                               mapping.field))
        out.append(mapped)
        if metric.needs_business_hours and not business_hours:
            mapped.problem = f"{mapped.name}: {metric.name} needs a business-hours schedule ([kpis.business_hours])"
            continue
        try:
            if mapping.object not in read:
                read[mapping.object] = definitions(store, writer, helpdesk, mapping.object, refresh=refresh)
            mapped.field = resolve_field(mapped.name, mapping.field, read[mapping.object])
        except FieldMissing as exc:
            mapped.problem, mapped.missing = str(exc), True
            continue
        except MappingError as exc:
            mapped.problem = str(exc)
            continue
        why = mismatch(metric, mapped.field) or _survey_source(settings, mapping, mapped.field)
        if why:
            mapped.problem = f"{mapped.name}: {why}"
    return out


def _survey_source(settings: Settings, mapping: WritebackMapping, field: FieldDef) -> str | None:
    """Writing into a field that `[[surveys.mappings]]` reads answers from would feed our output back in."""
    level = objects(mapping.helpdesk)[mapping.object]
    location = {Level.CONTACT: "ticket_field", Level.REQUESTER: "person_field"}.get(level)
    for survey in settings.surveys.mappings:
        same_place = survey.helpdesk == mapping.helpdesk and survey.location == location
        if same_place and survey.field in (field.key, field.title):
            return (f"the field is where [[surveys.mappings]] reads {survey.kind} answers from; writing into it would"
                    " turn write-back's own values into survey answers")
    return None


def targets(mapped: list[MappedField]) -> list[Target]:
    """The mappings as write targets; MappingError listing every problem when any mapping has one."""
    problems = [m.problem for m in mapped if m.problem]
    if problems:
        raise MappingError("\n".join(problems))
    return [Target(m.name, m.mapping.object, m.metric, m.field) for m in mapped if m.field is not None]


def spec_for(mapped: MappedField) -> FieldSpec:
    """The field `fields --create` makes for a mapping: named as the mapping names it, typed for its metric."""
    return FieldSpec(mapped.mapping.object, mapped.mapping.field, f"{mapped.metric.name} (helpdesk-kpi)",
                     CREATE_TYPE[mapped.metric.kind])


def create_missing(store: Store, helpdesk: str, writer: Writer, mapped: list[MappedField]) -> list[Created]:
    """Create the field of every mapping whose field is missing, where the API allows it."""
    out = []
    for m in mapped:
        if not m.missing:
            continue
        spec = spec_for(m)
        try:
            created = writer.create_field(spec)
        except FieldNotCreatable as exc:
            out.append(Created(m, None, str(exc)))
            continue
        if spec.key not in (created.key, created.title):
            message = (f"created as {created.key!r} (the helpdesk chose the name): set field = {created.key!r}"
                       f" in {m.name}")
        elif created.key != spec.key:
            message = f"created {created.vendor_type} field {created.title!r} (id {created.key})"
        else:
            message = f"created {created.vendor_type} field {created.key!r}"
        out.append(Created(m, created, message))
    ledger.forget_definitions(store, helpdesk)
    return out
