"""Write-back in the demo: a `[writeback]` section for the sandbox, its fields, and one push, reported in lines.

What is written where comes from each fake (`FakeApi.demo_mappings`, `demo_notes`), so a
connector package brings its own demo write-back.
"""

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


def sandbox_toml(sandbox: Sandbox) -> str:
    """The `[writeback]` section the demo appends to the sandbox's config."""
    lines = ["[writeback]", "enabled = true", "max_writes_per_run = 5000", ""]
    for helpdesk, fake in sandbox.fakes.items():
        for object, metric, name in fake.demo_mappings:
            lines += ["[[writeback.mappings]]", f'helpdesk = "{helpdesk}"', f'object = "{object}"',
                      f'metric = "{metric}"', f'field = "{name}"', ""]
    for helpdesk, fake in sandbox.fakes.items():
        for rule, template in fake.demo_notes:
            lines += ["[[writeback.notes]]", f'helpdesk = "{helpdesk}"', f'rule = "{rule}"',
                      f'template = "{template}"', ""]
    return "\n".join(lines)


def prepare_fields(sandbox: Sandbox, settings: Settings) -> None:
    """Play the admin: each fake creates the mapped fields its API cannot create."""
    for m in settings.writeback.mappings:
        if m.helpdesk in sandbox.fakes:
            sandbox[m.helpdesk].prepare_demo_field(m.object, m.field, CREATE_TYPE[METRICS[m.metric].kind])


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
        say(f"  {name}: {o.written:,} records and notes written ({notes:,} private note{'' if notes == 1 else 's'})"
            f" in {o.requests:,}"
            f" write requests, {o.failed:,} failed, {o.deferred:,} left for the next push")
    return report.ok
