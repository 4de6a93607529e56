"""Write requests per 1,000 changed records, per helpdesk and object, against the least the API allows.

Run: `.venv/bin/python bench/writeback.py [TICKETS]`. A sandbox is synced, one field per
object is mapped and created, and the first push (every record changes) is measured from
the fakes' request logs; then a few hundred tickets change, a sync reads them, and the
second push is measured the same way.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from connectors.registry import build_writer
from connectors.sandbox import Sandbox
from kpi_core.settings import load_settings
from kpi_core.store import open_store
from kpi_core.sync import sync_all
from kpi_core.writeback.demo import prepare_fields
from kpi_core.writeback.fields import check, create_missing
from kpi_core.writeback.push import push

MAPPINGS = (
    ("zendesk", "ticket", "first_response_minutes", "kpi_frt"),
    ("zendesk", "user", "contacts_30d", "kpi_contacts_30d"),
    ("intercom", "conversation", "first_response_minutes", "kpi_frt"),
    ("intercom", "contact", "contacts_30d", "kpi_contacts_30d"),
    ("freshdesk", "ticket", "first_response_minutes", "cf_kpi_frt_minutes"),
    ("freshdesk", "contact", "contacts_30d", "cf_kpi_contacts_30d"),
)
# Records one write request can carry at most, by (helpdesk, object): only Zendesk tickets have a
# per-record bulk form (update_many, 100 tickets with their own values); elsewhere one per record.
BULK = {("zendesk", "ticket"): 100}
OBJECT_OF = {"tickets": "ticket", "users": "user", "conversations": "conversation", "contacts": "contact"}


def main(tickets: int) -> None:
    sandbox = Sandbox.generate(seed=3, tickets=tickets)
    sandbox.start()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "c.toml"
        lines = ["[writeback]", "enabled = true", "max_writes_per_run = 100000", ""]
        for helpdesk, object, metric, name in MAPPINGS:
            lines += ["[[writeback.mappings]]", f'helpdesk = "{helpdesk}"', f'object = "{object}"',
                      f'metric = "{metric}"', f'field = "{name}"', ""]
        config.write_text(sandbox.config_toml(str(Path(tmp) / "s.sqlite")) + "\n" + "\n".join(lines))
        settings = load_settings(config)
        prepare_fields(sandbox, settings)
        store = open_store(settings.store.path)
        sync_all(store, settings)
        for helpdesk, section in settings.enabled_connectors().items():
            writer = build_writer(helpdesk, section)
            create_missing(store, helpdesk, writer, check(store, settings, helpdesk, writer, refresh=True))
            writer.close()
        print(f"{tickets:,} tickets in the sandbox")
        measure("first push (every record new)", sandbox, store, settings)
        for name in ("zendesk", "intercom", "freshdesk"):
            sandbox.world.mutate(name, max(1, tickets // 10))
        sync_all(store, settings)
        measure("push after changes and a sync", sandbox, store, settings)
        store.close()
    sandbox.stop()


def measure(title: str, sandbox: Sandbox, store: object, settings: object) -> None:
    for fake in sandbox.fakes.values():
        fake.clear_log()
    started = time.perf_counter()
    report = push(store, settings, writer_options={"zendesk": {"poll_interval": 0.01}})  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    print(f"\n{title}: {seconds:.1f}s")
    print(f"{'helpdesk':10} {'object':13} {'records':>8} {'write req':>9} {'least':>6} {'polls':>6}"
          f" {'per 1,000':>10} {'least/1,000':>12}")
    for name, outcome in report.outcomes.items():
        calls = sandbox[name].calls()
        records: Counter[str] = Counter(w.object for w in (outcome.plan.writes if outcome.plan else []))
        writes: Counter[str] = Counter()
        polls = 0
        for call in calls:
            if call.method == "GET":
                polls += "job_statuses" in call.path
                continue
            part = call.path.split("/")[3 if call.path.startswith("/api/") else 1]
            writes[OBJECT_OF.get(part, part)] += 1
        for object, count in sorted(records.items()):
            bulk = BULK.get((name, object), 1)
            least = -(-count // bulk)
            extra = polls if (name, object) in BULK else 0
            print(f"{name:10} {object:13} {count:8,} {writes[object]:9,} {least:6,} {extra:6,}"
                  f" {1000 * writes[object] / count:10.1f} {1000 / bulk:12.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4000)
