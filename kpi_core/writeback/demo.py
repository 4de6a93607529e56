"""Write-back in the demo: a `[writeback]` section for the sandbox, its fields, and one push, reported in lines."""

from __future__ import annotations

from collections.abc import Callable

from connectors.registry import build_writer
from connectors.sandbox import Sandbox
from kpi_core.settings import Settings
from kpi_core.store import Store
from kpi_core.writeback import fields
from kpi_core.writeback.convert import CREATE_TYPE
from kpi_core.writeback.mappings import METRICS
from kpi_core.writeback.push import helpdesks, push

Say = Callable[[str], None]

# (helpdesk, object, metric, field): one mapping per object type of each helpdesk, and more on tickets.
SANDBOX_MAPPINGS = (
    ("zendesk", "ticket", "first_response_minutes", "kpi_first_response_minutes"),
    ("zendesk", "ticket", "sla_met", "kpi_sla_met"),
    ("zendesk", "ticket", "repeat_contact", "kpi_repeat_contact"),
    ("zendesk", "user", "contacts_30d", "kpi_contacts_30d"),
    ("zendesk", "user", "last_csat", "kpi_last_csat"),
    ("zendesk", "organization", "csat_pct_90d", "kpi_csat_pct_90d"),
    ("intercom", "conversation", "first_response_minutes", "kpi_first_response_minutes"),
    ("intercom", "conversation", "one_touch", "kpi_one_touch"),
    ("intercom", "contact", "contacts_30d", "kpi_contacts_30d"),
    ("intercom", "company", "repeat_contacts_30d", "kpi_repeat_contacts_30d"),
    ("freshdesk", "ticket", "first_response_minutes", "cf_kpi_frt_minutes"),
    ("freshdesk", "ticket", "sla_met", "cf_kpi_sla_met"),
    ("freshdesk", "contact", "csat_pct_90d", "cf_kpi_csat_pct_90d"),
    ("freshdesk", "company", "contacts_30d", "cf_kpi_contacts_30d"),
)
SANDBOX_NOTES = (
    ("zendesk", "repeat_contact", "Repeat contact: {contacts_30d} contacts in 30 days, last CSAT {last_csat}."),
    ("intercom", "sla_breached", "First reply missed its target (first response: {first_response_minutes} min)."),
    ("freshdesk", "repeat_contact", "Repeat contact: {contacts_30d} contacts in 30 days."),
)


def sandbox_toml() -> str:
    """The `[writeback]` section the demo appends to the sandbox's config."""
    lines = ["[writeback]", "enabled = true", "max_writes_per_run = 5000", ""]
    for helpdesk, object, metric, name in SANDBOX_MAPPINGS:
        lines += ["[[writeback.mappings]]", f'helpdesk = "{helpdesk}"', f'object = "{object}"',
                  f'metric = "{metric}"', f'field = "{name}"', ""]
    for helpdesk, rule, template in SANDBOX_NOTES:
        lines += ["[[writeback.notes]]", f'helpdesk = "{helpdesk}"', f'rule = "{rule}"', f'template = "{template}"', ""]
    return "\n".join(lines)


def create_conversation_attributes(sandbox: Sandbox, settings: Settings) -> None:
    """Play the Intercom admin: create the conversation attributes the API cannot create."""
    for m in settings.writeback.mappings:
        if m.helpdesk == "intercom" and m.object == "conversation":
            kind = CREATE_TYPE[METRICS[m.metric].kind]
            sandbox.world.define_field("intercom", "ticket", m.field, "decimal" if kind == "number" else kind, m.field)


def run(store: Store, settings: Settings, say: Say, warn: Say) -> bool:
    """Create the missing fields, push once, and say what happened. True when everything was accepted."""
    enabled = settings.enabled_connectors()
    for helpdesk in helpdesks(settings):
        if helpdesk not in enabled:
            continue
        writer = build_writer(helpdesk, enabled[helpdesk])
        try:
            mapped = fields.check(store, settings, helpdesk, writer, refresh=True)
            for created in fields.create_missing(store, helpdesk, writer, mapped):
                (say if created.field else warn)(f"  {helpdesk}: {created.message}")
        finally:
            writer.close()
    report = push(store, settings)
    for name, o in report.outcomes.items():
        if o.refused:
            warn(f"  {name}: push refused: {o.refused}")
            continue
        notes = len(o.plan.notes) if o.plan else 0
        say(f"  {name}: {o.written:,} records and notes written ({notes:,} private notes) in {o.requests:,}"
            f" write requests, {o.failed:,} failed, {o.deferred:,} left for the next push")
    return report.ok
