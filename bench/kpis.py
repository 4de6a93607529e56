"""KPI engine benchmark: a year of 1,000,000 contacts, computed by month unsegmented and by channel x language.

    .venv/bin/python bench/kpis.py [--contacts 1000000] [--orders 0] [--store PATH] [--business-hours] [--keep]
                                   [--compare duckdb] [--store-url postgresql://... [--account NAME]]

Generates contacts (with messages, status events, CSAT and NPS answers, requesters) straight
into a store with bulk SQL inserts, then, each in a fresh process so peak RSS is the
phase's own: a full `compute`, a recompute with nothing changed, and an incremental
recompute after one day's contacts changed. That day is changed the way a sync changes it
(`Store.write_page`, so the contacts are marked for the engine and its facts really refresh).
Finally the same KPIs done naively in pandas, when pandas is installed.

`--compare duckdb` (needs duckdb: the `bench` or `test` extra; `make bench` installs it)
also runs the KPIs written by hand in DuckDB over the same facts (bench/duckdb_reference.py)
after the full recompute and again after the incremental one, checks every stored value
against them to 1e-9 relative (`all N values agree`, or the ones that disagree), and ends
with `engine/duckdb ratio: N.NN`: the engine's full recompute over the DuckDB query time
(the load into DuckDB is reported apart). Goals on a 2-core machine: full recompute at most
twice the DuckDB reference's time (with --compare), incremental at most 0.3 s, peak RSS at
most 500 MB in every phase; `--contacts 250000` beside the default shows whether compute time
grows linearly with contacts.

`--orders N` adds an order feed (catalogue 3b): N orders over the 15 months before the
year's end, four in five by customers who are requesters (matched by their keyed e-mail hash),
the rest by shop-only customers; 3 % cancelled, 8 % with a refund. It then reports the value
KPIs' share: the per-contact value facts timed alone (the `valued` look-up of `facts.py`
over every contact) against the whole facts rebuild, and, each in a fresh process, the
evaluation of the value KPIs against that of the others (time and peak RSS).

`--store-url URL` runs the same phases on an account (`--account`, default `bench`) of a
PostgreSQL store (docs/postgresql.md) instead of a SQLite file: the contacts are generated into
it with COPY, and the engine's columnar copy lives beside `--store` (a temporary folder's
`store.sqlite` by default), as it does beside `[store] path`. The DuckDB reference and pandas,
which read a SQLite file, are skipped there. The account is dropped at the end unless `--keep`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.freshdesk.normalize import FRESHDESK_SCALE
from kpi_core.kpis.api import compute
from kpi_core.kpis.context import Context, copy_rows
from kpi_core.model import is_positive_response
from kpi_core.settings import KpiSettings, Settings, StoreSettings
from kpi_core.store import Store, account_schema, open_store

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
YEAR_START = date(2025, 1, 1)
SEGMENTS = [[], ["channel", "language"]]
CHANNELS = {"email": 35, "chat": 25, "web_form": 12, "messaging": 8, "phone": 8, "social": 6, "api": 4, "other": 2}
LANGUAGES = {"en": 40, "de": 14, "fr": 11, "es": 9, "pt": 8, "ja": 5, "nl": 5, "it": 4, "zh": 2, "und": 2}
COUNTRIES = {"en": "US", "de": "DE", "fr": "FR", "es": "ES", "pt": "BR", "ja": "JP", "nl": "NL", "it": "IT", "zh": "CN"}
SOURCES = {"zendesk": 50, "intercom": 25, "freshdesk": 25}
REPLY_SECONDS = {"chat": 90, "messaging": 150, "phone": 25, "email": 5 * 3600, "web_form": 6 * 3600,
                 "social": 2 * 3600, "api": 8 * 3600, "other": 10 * 3600}
TAGS = ["billing", "refund", "shipping", "login", "bug", "feature_request", "returns", "vip", "invoice", "delay"]
LIVE = {"chat", "messaging", "phone"}
BATCH = 50_000
# `--store-url URL --account NAME` when the store is a PostgreSQL account: the phases' processes get them too.
SERVER: list[str] = []


def _store(path: Path) -> Store:
    """The bench's store: the SQLite file `path`, or the PostgreSQL account given by --store-url."""
    return open_store(SERVER[1], SERVER[3]) if SERVER else open_store(path)


def _engine_settings(path: Path, business_hours: bool, stamp: int = 0) -> Settings | KpiSettings:
    """What compute is given: on a PostgreSQL account, the whole settings, so the columnar copy lives beside `path`
    (as beside `[store] path`) rather than being made anew in memory each time."""
    kpis = settings(business_hours, stamp)
    if not SERVER:
        return kpis
    return Settings(store=StoreSettings(path=path, url=SERVER[1], account=SERVER[3]), kpis=kpis)


def _context(store: Store, path: Path) -> Context:
    return Context(store, settings(False), NOW, beside=path if SERVER else None)


def _phase_cmd(path: Path, phase: str, *extra: str) -> list[str]:
    return [sys.executable, __file__, "--phase", phase, "--store", str(path), *SERVER, *extra]


def _positive(kind: str, score: float, scale: str) -> bool | None:
    """What a connector stores: the catalogue's rule, or its own coded scale's."""
    if scale == FRESHDESK_SCALE.name:
        return FRESHDESK_SCALE.is_positive(score)
    return is_positive_response(kind, score, scale)


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _picker(rng: random.Random, weights: dict[str, int]) -> Any:
    names, cum = list(weights), []
    total = 0
    for w in weights.values():
        total += w
        cum.append(total)
    return lambda: rng.choices(names, cum_weights=cum)[0]


def settings(business_hours: bool, stamp: int = 0) -> KpiSettings:
    """The bench's settings; another `stamp` names an unused custom segment, which changes only the values'
    fingerprint: `compute` then redoes every value over the facts it keeps (what a full recompute times)."""
    extra: dict[str, Any] = {"custom_segments": {"bench_stamp": f"stamp{stamp}"}} if stamp else {}
    if business_hours:
        week = {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}
        extra["business_hours"] = {"office": {"time_zone": "Europe/Berlin", "hours": week,
                                              "holidays": ["2025-12-25", "2025-12-26"]}}
    return KpiSettings(**extra)


def generate(path: Path, contacts: int, seed: int, orders: int = 0) -> dict[str, Any]:
    """Bulk-insert a year of contacts and their messages, status events, surveys and requesters (and orders)."""
    rng = random.Random(seed)
    store = _store(path)
    conn = store.db.conn
    started = time.perf_counter()
    channel, language, source = _picker(rng, CHANNELS), _picker(rng, LANGUAGES), _picker(rng, SOURCES)
    requesters = max(1, contacts * 2 // 5)
    t0 = datetime.combine(YEAR_START, datetime.min.time(), timezone.utc).timestamp()
    span = 365 * 86400 - 3600
    counts = {"contacts": 0, "messages": 0, "status_events": 0, "survey_responses": 0, "people": 0}
    conn.execute("BEGIN")
    people = [(s, f"r{i}", "customer", lang, COUNTRIES.get(lang), f"h{i}" if orders else None)
              for i in range(requesters) for s, lang in [(source(), language())]]
    _insert(conn, "people", ("source", "source_id", "role", "language", "country", "email_hash"), people)
    counts["people"] = len(people)
    del people
    msg_id = ev_id = sv_id = 0
    rows: list[tuple[Any, ...]] = []
    msgs: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    surveys: list[tuple[Any, ...]] = []
    for i in range(contacts):
        src, ch, lang = source(), channel(), language()
        created = t0 + rng.random() * span
        outbound = rng.random() < 0.05
        first_customer = created + rng.randint(600, 86400) if outbound and rng.random() < 0.6 else (
            None if outbound else created)
        bot_only = ch in LIVE and not outbound and rng.random() < 0.08
        replied = not bot_only and rng.random() < 0.94 and (first_customer is not None or outbound)
        reply = ((first_customer or created) + max(5, rng.lognormvariate(0, 0.9) * REPLY_SECONDS[ch])
                 if replied else None)
        replies = (1 + rng.choices([0, 1, 2, 3], weights=[55, 25, 12, 8])[0]) if replied else 0
        resolved = bot_only or (replied and rng.random() < 0.88)
        first_res = ((reply or created) + rng.randint(60, 3 * 86400)) if resolved else None
        reopened = resolved and not bot_only and rng.random() < 0.08
        last_res = first_res + rng.randint(3600, 5 * 86400) if reopened and first_res else first_res
        status = "closed" if resolved and rng.random() < 0.5 else ("resolved" if resolved else "open")
        if rng.random() < 0.01:
            status = "deleted"
        handle = float(rng.randint(120, 5400)) if resolved and src != "zendesk" else None
        tags = json.dumps(rng.sample(TAGS, rng.randint(0, 2)))
        rows.append((src, f"c{i}", ch, status, rng.choice(("low", "normal", "normal", "high", "urgent")),
                     iso(created), iso(first_customer) if first_customer else None, iso(reply) if reply else None,
                     iso(first_res) if first_res else None, iso(last_res) if last_res else None, int(reopened),
                     replies, 1 + replies, handle, f"r{rng.randrange(requesters)}", f"a{rng.randrange(120)}",
                     f"g{rng.randrange(8)}", lang, COUNTRIES.get(lang), rng.choice(("question", "incident", "problem")),
                     tags, json.dumps({"sku": f"SKU-{rng.randrange(40)}"}), int(bot_only), int(bot_only),
                     int(outbound), iso(last_res or reply or created)))
        if first_customer:
            msg_id += 1
            msgs.append((src, f"m{msg_id}", f"c{i}", "customer", 1, iso(first_customer)))
        if reply:
            msg_id += 1
            msgs.append((src, f"m{msg_id}", f"c{i}", "agent", 1, iso(reply)))
        if bot_only:
            msg_id += 1
            msgs.append((src, f"m{msg_id}", f"c{i}", "bot", 1, iso(created + 20)))
        if first_res:
            for kind, at in [("resolved", first_res)] + ([("reopened", first_res + 1800), ("resolved", last_res)]
                                                         if reopened else []):
                ev_id += 1
                events.append((src, f"e{ev_id}", f"c{i}", kind, iso(at)))
            if rng.random() < 0.3:
                sv_id += 1
                scale, score = {"zendesk": ("good_bad", float(rng.random() < 0.85)),
                                "intercom": ("1-5", float(rng.choices([1, 2, 3, 4, 5], [4, 3, 8, 25, 60])[0])),
                                "freshdesk": ("freshdesk", float(rng.choice([103, 102, 101, 100, -101, -103])))}[src]
                surveys.append((src, f"s{sv_id}", "csat", score, scale, iso(first_res + rng.randint(600, 86400)),
                                f"c{i}", None, _positive("csat", score, scale)))
            if rng.random() < 0.05:
                sv_id += 1
                nps = float(rng.choices(range(11), [1] * 6 + [2, 3, 4, 6, 6])[0])
                surveys.append((src, f"s{sv_id}", "nps", nps, "0-10", iso(first_res + rng.randint(600, 7 * 86400)),
                                f"c{i}", None, _positive("nps", nps, "0-10")))
        if len(rows) >= BATCH or i == contacts - 1:
            _flush(conn, rows, msgs, events, surveys, counts)
    if orders:
        counts["orders"] = _orders(conn, rng, orders, requesters)
    conn.execute("COMMIT")
    size = (store.db.execute("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n"
                             " ON n.oid = c.relnamespace WHERE n.nspname = current_schema()").fetchone()[0]
            if SERVER else path.stat().st_size)
    store.close()
    return {**counts, "seconds": round(time.perf_counter() - started, 1), "store_mb": round(float(size) / 1e6, 1)}


def _insert(conn: Any, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """Bulk rows: one INSERT statement run for each on SQLite, a COPY stream on PostgreSQL."""
    if SERVER:
        copy_rows(conn, table, columns, rows)
        return
    marks = ", ".join("?" for _ in columns)
    conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def _orders(conn: Any, rng: random.Random, n: int, requesters: int) -> int:
    """N orders from 1 October 2024 to the year's end: 80 % by requesters (their hash), 20 % by shop-only customers."""
    t0 = datetime(2024, 10, 1, tzinfo=timezone.utc).timestamp()
    span = NOW.timestamp() - t0 - 3600
    batch: list[tuple[Any, ...]] = []
    for i in range(n):
        customer = f"h{rng.randrange(requesters)}" if rng.random() < 0.8 else f"shop{rng.randrange(max(1, n // 10))}"
        created = t0 + rng.random() * span
        total = round(rng.lognormvariate(3.5, 0.7), 2)
        refunds = ([{"at": iso(created + rng.randint(3600, 30 * 86400)), "amount": round(total * rng.random(), 2)}]
                   if rng.random() < 0.08 else [])
        lines = [{"sku": f"SKU-{rng.randrange(40)}", "quantity": rng.randint(1, 3)} for _ in range(rng.randint(1, 3))]
        cancelled = iso(created + 3600) if rng.random() < 0.03 else None
        batch.append(("shop", f"o{i}", customer, iso(created), iso(created), cancelled, "EUR", total,
                      json.dumps(refunds), json.dumps(lines)))
        if len(batch) >= BATCH or i == n - 1:
            _insert(conn, "orders", ("source", "source_id", "customer_key", "created_at", "updated_at",
                                     "cancelled_at", "currency", "total", "refunds", "lines"), batch)
            batch.clear()
    return n


def phase_value_facts(path: Path) -> dict[str, Any]:
    """The per-contact value facts alone: the order look-up of facts.select_sql over every contact."""
    from kpi_core.kpis import facts as F

    store = _store(path)
    ctx = _context(store, path)
    placed = ("SELECT c.source || ':' || c.requester_id AS requester, c.created_at, unixepoch(c.created_at) AS"
              " created_epoch, unixepoch(c.first_resolved_at) AS first_resolved_epoch, (SELECT p.email_hash"
              " FROM people p WHERE p.source = c.source AND p.source_id = c.requester_id) AS customer FROM contacts c")
    sql = (f"WITH placed AS ({placed}), {F._value_sql(lambda c: F.epoch_sql(ctx.conn, c))}"
           " SELECT count(*), sum(ordered_before), sum(shop_matched) FROM valued")
    started = time.perf_counter()
    contacts, before, matched = ctx.conn.execute(sql).fetchone()
    seconds = time.perf_counter() - started
    store.close()
    return {"seconds": round(seconds, 2), "contacts": contacts, "ordered_before": before, "matched": matched,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def phase_evaluate(path: Path, which: str) -> dict[str, Any]:
    """Evaluate every month of the year, unsegmented and channel x language, for the value KPIs or the others
    (nothing stored: the engine's evaluation alone, over the columnar copy brought up to date first)."""
    from kpi_core.kpis import catalogue
    from kpi_core.kpis.engine import evaluate
    from kpi_core.kpis.periods import Grain, periods_between
    from kpi_core.kpis.segments import parse

    store = _store(path)
    ctx = _context(store, path)
    kpis = [k for k in catalogue.selected(None, False) if (k.id in catalogue.VALUE_KPIS) == (which == "value")]
    months = periods_between(Grain.MONTH, YEAR_START, NOW.date())
    segs = [parse(s, ctx.settings) for s in SEGMENTS]
    evaluate(ctx, months[:1], segs[:1], kpis[:1])  # the copy brought up to date, outside the timing
    started = time.perf_counter()
    found = evaluate(ctx, months, segs, kpis)
    seconds = time.perf_counter() - started
    store.close()
    return {"kpis": len(kpis), "values": len(found), "seconds": round(seconds, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def run_named(path: Path, phase: str, *extra: str) -> dict[str, Any]:
    out = subprocess.run(_phase_cmd(path, phase, *extra), check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def value_share(path: Path, first_compute: dict[str, Any]) -> dict[str, Any]:
    """The value KPIs' share of compute time and memory (see the module's docstring)."""
    facts_part = run_named(path, "value-facts")
    value = run_named(path, "evaluate", "--which", "value")
    rest = run_named(path, "evaluate", "--which", "rest")
    total = value["seconds"] + rest["seconds"]
    return {"value_facts": facts_part, "first_compute_seconds": first_compute["seconds"],
            "value_facts_share_of_first_compute_pct": round(100 * facts_part["seconds"] / first_compute["seconds"], 1),
            "evaluate_value": value, "evaluate_rest": rest,
            "value_share_of_evaluation_pct": round(100 * value["seconds"] / total, 1) if total else None}


def _flush(conn: Any, rows: list[Any], msgs: list[Any], events: list[Any], surveys: list[Any],
           counts: dict[str, int]) -> None:
    _insert(conn, "contacts", (
        "source", "source_id", "channel", "status", "priority", "created_at", "first_customer_message_at",
        "first_agent_reply_at", "first_resolved_at", "last_resolved_at", "reopens", "agent_replies",
        "customer_messages", "handle_seconds", "requester_id", "assignee_id", "group_id", "language", "country",
        "ticket_type", "tags", "custom", "is_bot_only", "has_bot_message", "is_outbound", "last_activity_at"), rows)
    _insert(conn, "messages", ("source", "source_id", "contact_id", "author_role", "public", "created_at"), msgs)
    _insert(conn, "status_events", ("source", "source_id", "contact_id", "kind", "at"), events)
    _insert(conn, "survey_responses", ("source", "source_id", "kind", "score", "scale", "created_at", "contact_id",
                                       "requester_id", "is_positive"), surveys)
    for name, batch in (("contacts", rows), ("messages", msgs), ("status_events", events),
                        ("survey_responses", surveys)):
        counts[name] += len(batch)
        batch.clear()


def change_one_day(path: Path, day: date, seed: int) -> dict[str, int]:
    """A sync's worth of changes on one day, written the way a sync writes them: replies and resolutions arrive
    (with their status events), new contacts and ratings come in.

    Through `Store.write_page`, page by page per source, so the store marks the contacts for the KPI engine
    (`mark_for_kpis`) and notes them for derivation, the triggers note the changed days, and the sync's
    closing `settle` runs: the next compute refreshes exactly the facts a real sync would have it refresh."""
    rng = random.Random(seed)
    store = _store(path)
    conn = store.db.conn
    rows = conn.execute(
        "SELECT source, source_id, channel, created_at, first_agent_reply_at, agent_replies FROM contacts"
        " WHERE created_at >= ? AND created_at < ? AND first_resolved_at IS NULL",
        [day.isoformat(), (day + timedelta(days=1)).isoformat()]).fetchall()
    at = iso(datetime.combine(day, datetime.min.time(), timezone.utc).timestamp() + 20 * 3600)
    pages: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for i, (src, sid, channel, created, reply, replies) in enumerate(rows):
        page = pages.setdefault(src, {"contacts": [], "status_events": []})
        page["contacts"].append({"source": src, "source_id": sid, "channel": channel, "status": "resolved",
                                 "created_at": created, "first_agent_reply_at": reply or at,
                                 "agent_replies": max(replies or 0, 1), "first_resolved_at": at,
                                 "last_resolved_at": at, "last_activity_at": at})
        page["status_events"].append({"source": src, "source_id": f"chg{i}", "contact_id": sid, "kind": "resolved",
                                      "at": at})
    new = [{"source": "zendesk", "source_id": f"new{i}", "channel": "email", "status": "open", "priority": "normal",
            "created_at": at, "first_customer_message_at": at, "reopens": 0, "agent_replies": 0,
            "customer_messages": 1, "requester_id": f"r{rng.randrange(1000)}", "group_id": "g1", "language": "en",
            "country": "US", "ticket_type": "question", "tags": [], "custom": {}, "is_bot_only": False,
            "has_bot_message": False, "is_outbound": False, "last_activity_at": at} for i in range(300)]
    ratings = [{"source": "zendesk", "source_id": f"newsv{i}", "kind": "csat", "score": 1.0, "scale": "good_bad",
                "created_at": at, "requester_id": f"r{i}", "is_positive": True} for i in range(100)]
    for src, page in sorted(pages.items()):
        store.write_page(src, "bench_changes", page, None)
    store.write_page("zendesk", "bench_changes", {"contacts": new}, None)
    store.write_page("zendesk", "bench_ratings", {"survey_responses": ratings}, None)
    store.settle()  # as a sync does when it ends
    marked = conn.execute("SELECT count(*) FROM kpi_dirty_contacts").fetchone()[0]
    days = conn.execute("SELECT count(*) FROM kpi_dirty_days").fetchone()[0]
    store.close()
    return {"contacts_resolved": len(rows), "contacts_new": len(new), "ratings_new": len(ratings),
            "contacts_marked": marked, "days_marked": days}


def phase_compute(path: Path, business_hours: bool, stamp: int) -> dict[str, Any]:
    store = _store(path)
    started, cpu = time.perf_counter(), time.process_time()
    summary = compute(store, _engine_settings(path, business_hours, stamp), YEAR_START, NOW.date(), grains=["month"],
                      segments=SEGMENTS, now=NOW)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    store.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    done = summary.as_dict()
    return {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "load": round(os.getloadavg()[0], 1),
            "peak_rss_mb": round(rss_mb), "periods": done["periods_computed"],
            "periods_partly": done["periods_partly"], "values": done["values_written"],
            "refreshed": done["contacts_refreshed"], "changed": done["contacts_changed"],
            "rebuilt_facts": done["rebuilt_everything"],
            "diagnostics": done["diagnostics"]}


def run_phase(path: Path, business_hours: bool, stamp: int = 0) -> dict[str, Any]:
    """One compute in a fresh process (so its peak RSS is its own); another stamp redoes every value."""
    cmd = _phase_cmd(path, "compute", "--stamp", str(stamp), *(["--business-hours"] if business_hours else []))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def phase_duckdb(path: Path, business_hours: bool, stamp: int) -> dict[str, Any]:
    """The hand-written DuckDB KPIs over the store's facts, checked against the engine's stored values."""
    import duckdb_reference as ref  # needs duckdb (the `bench` extra): imported only when asked for

    lo, hi = YEAR_START, NOW.date()
    db, load_s = ref.load(path)
    found, query_s = ref.reference(db, settings(business_hours, stamp), int(NOW.timestamp()), lo, hi,
                                   date(lo.year - 1, 12, 1))
    db.close()
    n, both, wrong = ref.compare(ref.stored(path, lo, hi), found)
    return {"load_seconds": round(load_s, 2), "query_seconds": round(query_s, 3), "kpis": len(ref.KPIS),
            "values": n, "non_empty": both, "disagree": len(wrong), "load": round(os.getloadavg()[0], 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "disagreements": [f"{k[0]} {k[2]} by={k[1]!r} {k[3]}: engine {a!r}, duckdb {b!r}"
                              for k, a, b in wrong[:20]]}


def run_duckdb(path: Path, business_hours: bool, stamp: int = 1) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--phase", "duckdb", "--store", str(path), "--stamp", str(stamp)] + (
        ["--business-hours"] if business_hours else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_check(label: str, check: dict[str, Any]) -> None:
    """`all N values agree`, or the ones that disagree (the first 20)."""
    print(f"duckdb reference {label}: load {check['load_seconds']} s (kpi_facts, survey_responses and people read"
          f" through sqlite3 into NumPy, copied into DuckDB tables), queries {check['query_seconds']} s"
          f" ({check['kpis']} KPIs, every month, unsegmented and channel x language, results fetched),"
          f" peak RSS {check['peak_rss_mb']} MB", flush=True)
    if not check["disagree"]:
        print(f"all {check['values']} values agree ({check['non_empty']} of them not empty on either side;"
              f" relative tolerance 1e-9)", flush=True)
        return
    print(f"{check['disagree']} of {check['values']} values disagree:", flush=True)
    for line in check["disagreements"]:
        print("  " + line, flush=True)


def naive_pandas(path: Path) -> dict[str, Any] | str:
    """The same monthly KPIs (a representative subset of the heavy ones) done the obvious way in pandas."""
    try:
        import pandas as pd
    except ImportError:
        return "skipped: pandas is not installed (pip install pandas to compare)"
    import sqlite3

    started = time.perf_counter()
    conn = sqlite3.connect(path)
    df = pd.read_sql("SELECT source, channel, language, status, created_at, first_customer_message_at,"
                     " first_agent_reply_at, first_resolved_at, last_resolved_at, reopens, agent_replies,"
                     " requester_id, is_outbound, is_bot_only FROM contacts WHERE status != 'deleted'", conn)
    surveys = pd.read_sql("SELECT kind, score, scale, is_positive, created_at FROM survey_responses", conn)
    conn.close()
    loaded = time.perf_counter() - started
    for col in ("created_at", "first_customer_message_at", "first_agent_reply_at", "first_resolved_at",
                "last_resolved_at"):
        df[col] = pd.to_datetime(df[col], utc=True)
    start = df["first_customer_message_at"].where(df["is_outbound"] == 1, df["created_at"])
    df["frt"] = (df["first_agent_reply_at"] - start).dt.total_seconds() / 60
    df["res"] = (df["first_resolved_at"] - df["created_at"]).dt.total_seconds() / 3600
    df["month"] = df["created_at"].dt.strftime("%Y-%m")
    df["res_month"] = df["first_resolved_at"].dt.strftime("%Y-%m")
    for keys in (["month"], ["month", "channel", "language"]):
        created = df.groupby(keys)
        created["frt"].agg(["mean", "median", lambda s: s.quantile(0.9, interpolation="higher"), "count"])
        created["requester_id"].agg(["count", "nunique"])
        res_keys = ["res_month", *keys[1:]]
        resolved = df[df["first_resolved_at"].notna()].groupby(res_keys)
        resolved["res"].agg(["mean", "median"])
        resolved.apply(lambda g: ((g["agent_replies"] == 1) & (g["reopens"] == 0)).sum()
                       / max((g["agent_replies"] >= 1).sum(), 1))
    csat = surveys[surveys["kind"] == "csat"].copy()
    csat["positive"] = csat["is_positive"] == 1  # stored at ingestion, as each connector does
    csat.groupby(csat["created_at"].str[:7])["positive"].mean()
    return {"seconds": round(time.perf_counter() - started, 2), "load_seconds": round(loaded, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "note": "FRT, resolution time, repeat rate, one-touch and CSAT only; no backlog, FCR, bh or diagnostics"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=0, help="orders of an order feed (value KPIs)")
    parser.add_argument("--which", choices=["value", "rest"], default="value", help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--business-hours", action="store_true", help="configure a schedule (adds the _bh KPIs)")
    parser.add_argument("--keep", action="store_true", help="keep the generated store")
    parser.add_argument("--compare", choices=["duckdb"], help="check every value against hand-written DuckDB"
                        " queries over the same facts (needs the `bench` extra) and end with the time ratio")
    parser.add_argument("--phase", choices=["compute", "generate", "duckdb", "value-facts", "evaluate"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--stamp", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--store-url", help="a PostgreSQL store (postgresql://...) instead of a SQLite file")
    parser.add_argument("--account", default="bench", help="the PostgreSQL store's account (default: bench)")
    args = parser.parse_args()
    if args.store_url:
        SERVER.extend(["--store-url", args.store_url, "--account", args.account])
        if args.compare:
            parser.error("--compare duckdb reads a SQLite file: leave it out with --store-url")
    if args.phase == "compute":
        print(json.dumps(phase_compute(args.store, args.business_hours, args.stamp)))
        return
    if args.phase == "duckdb":
        print(json.dumps(phase_duckdb(args.store, args.business_hours, args.stamp)))
        return
    if args.phase == "generate":
        print(json.dumps(generate(args.store, args.contacts, args.seed, args.orders)))
        return
    if args.phase == "value-facts":
        print(json.dumps(phase_value_facts(args.store)))
        return
    if args.phase == "evaluate":
        print(json.dumps(phase_evaluate(args.store, args.which)))
        return
    path = args.store or Path(tempfile.mkdtemp(prefix="bench-kpis-")) / "store.sqlite"
    report: dict[str, Any] = {"contacts": args.contacts, "orders": args.orders, "business_hours": args.business_hours,
                              "store": "postgresql" if SERVER else "sqlite"}
    if not _generated(path):
        # In its own process, like every phase: a child's peak RSS starts at its parent's size.
        cmd = _phase_cmd(path, "generate", "--contacts", str(args.contacts), "--seed", str(args.seed),
                         "--orders", str(args.orders))
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        report["generate"] = json.loads(done.stdout.strip().splitlines()[-1])
        print("generated:", json.dumps(report["generate"]), flush=True)
    report["first_compute"] = run_phase(path, args.business_hours)
    print("first compute (builds the per-contact facts, then every value):", json.dumps(report["first_compute"]),
          flush=True)
    if args.orders:
        report["value_share"] = value_share(path, report["first_compute"])
        print("value KPIs' share:", json.dumps(report["value_share"]), flush=True)
    report["full_compute"] = run_phase(path, args.business_hours, 1)
    print("full recompute (a values-only setting changed: every value again, facts kept):",
          json.dumps(report["full_compute"]),
          flush=True)
    report["no_change_recompute"] = run_phase(path, args.business_hours, 1)
    print("recompute, nothing changed:", json.dumps(report["no_change_recompute"]), flush=True)
    if args.compare:
        report["duckdb"] = run_duckdb(path, args.business_hours)
        print_check("(after the full recompute)", report["duckdb"])
    report["changed"] = change_one_day(path, date(2025, 6, 17), args.seed)
    print("one day changed through the sync path (Store.write_page):", json.dumps(report["changed"]), flush=True)
    report["incremental_compute"] = run_phase(path, args.business_hours, 1)
    inc = report["incremental_compute"]
    print(f"incremental compute (facts refreshed for {inc['refreshed']} marked contacts, {inc['changed']} changed;"
          f" {inc['seconds']} s):", json.dumps(inc), flush=True)
    if args.compare:
        report["duckdb_after_incremental"] = run_duckdb(path, args.business_hours)
        print_check("(after the incremental compute)", report["duckdb_after_incremental"])
    report["pandas"] = "skipped: it reads a SQLite file" if SERVER else naive_pandas(path)
    print("naive pandas:", json.dumps(report["pandas"]), flush=True)
    goals = {"incremental <= 0.3 s": report["incremental_compute"]["seconds"] <= 0.3,
             "RSS <= 500 MB": max(report[k]["peak_rss_mb"] for k in ("first_compute", "full_compute",
                                                                     "incremental_compute")) <= 500}
    if args.compare:
        goals["full <= 2 x duckdb"] = report["full_compute"]["seconds"] <= 2 * report["duckdb"]["query_seconds"]
    print("goals:", json.dumps(goals))
    if args.compare:
        full, duck = report["full_compute"], report["duckdb"]
        facts = (f"facts rebuilt for {full['refreshed']} contacts," if full["rebuilt_facts"]
                 else f"facts kept ({full['refreshed']} contacts refreshed),")
        print(f"engine full recompute: {full['seconds']} s (a fresh process: {facts} then every value evaluated and"
              f" written, and the diagnostics stored; {full['values']} values)")
        print(f"duckdb: {duck['query_seconds']} s (the hand-written queries over DuckDB tables already loaded,"
              f" results fetched; loading them took {duck['load_seconds']} s more)")
        print(f"engine/duckdb ratio: {full['seconds'] / duck['query_seconds']:.2f}")
    if SERVER and not args.keep:
        _drop_account(args.store_url, args.account)
    if not args.keep and not args.store:
        copy = f".{account_schema(args.account)}.columns" if SERVER else ".columns"
        for suffix in ("", "-wal", "-shm", copy, copy + ".wal"):  # the store and the engine's copy
            Path(str(path) + suffix).unlink(missing_ok=True)
        path.parent.rmdir()


def _generated(path: Path) -> bool:
    """Whether the store already holds generated contacts (given with --store, or --keep'd earlier)."""
    if not SERVER:
        return path.exists()
    store = _store(path)
    try:
        return store.db.execute("SELECT 1 FROM contacts LIMIT 1").fetchone() is not None
    finally:
        store.close()


def _drop_account(url: str, account: str) -> None:
    """Drop the bench's account; the views over every account (`all_accounts`) lose its tables with it, and are
    defined again over the accounts left."""
    from kpi_core.postgres import accounts, database

    db = database.connect(url, "public")
    try:
        db.conn.run_ddl(f'DROP SCHEMA IF EXISTS "{account_schema(account)}" CASCADE')
        accounts.refresh_views(db)
    finally:
        db.close()


if __name__ == "__main__":
    main()
