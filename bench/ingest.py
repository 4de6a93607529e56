"""Ingest benchmark: sync a sandbox helpdesk of N tickets into a fresh store and report.

    python bench/ingest.py [--source zendesk] [N ...]      (N = tickets of that source; default 50000 200000)

For each N it starts the sandbox in a subprocess (the fake API, over a world big enough to
give the source N tickets), runs one full sync in another subprocess with the real
connector, and prints:
- tickets/s of local processing (normalize + store): the syncing thread's CPU time outside
  the HTTP client (so a busy machine or a slow server does not blur it), split into
  normalizing and storing, and the same by wall time; the time inside the HTTP client
  (server rendering, network, JSON decoding, retries) is reported beside it;
- the peak RSS of the syncing process (it should stay flat as N grows);
- API calls per 1,000 tickets per stream against the minimum the pagination allows.

    python bench/ingest.py --insight [--source zendesk] [N ...]

`--insight` runs each size twice, without and with conversation insight (`[insight] enabled`:
the connector reads message bodies into memory, kpi_core/insight_pass.py analyses each page's
bodies and drops them before storing), and prints both reports and the two runs side by side:
tickets/s of local processing and the syncing process's peak RSS, with the analysers' share of
the CPU time and the messages they read. The goal is 1,000 tickets/s or more with insight (the
vendors' export limits allow about 170), memory flat as N grows.

The fake advertises a rate limit high enough never to slow the client down: the bench
measures this program, not Zendesk's 10 exports per minute. Another helpdesk is one more
entry in `SOURCES` (how to read the minimum calls from its fake, and its page sizes).

    python bench/ingest.py --second-sync [--source freshdesk] [--changed 1000] [N]

`--second-sync` measures what an incremental sync costs (in one process: the fake serves on
a thread). A world with N tickets of the source is synced once; then `--changed` tickets
change in the world (`World.mutate`: a reply, a resolution, a reopen or a rating each) and
a second sync runs. Its calls are counted per stream from the fake's own request log and
set against the floor, computed from the changes made and the documented largest page
sizes:

    floor = sum over the bulk lists L of  max(1, ceil(changed_L / max_page_L))
          + per-record reads the API has no bulk endpoint for
          + allowance: the directory lists read whole each sync (pages at max_page)

Freshdesk (`freshdesk_floor`): the lists are tickets (changed live tickets, 100), contacts
(`_updated_since`: customers changed, 100), satisfaction ratings (`created_since`: ratings
answered, 100), time entries (`executed_after`: entries logged, 100) and the deleted and spam
filters (one page each at least). Freshdesk has no bulk conversations endpoint: one
`GET /tickets/{id}/conversations` per changed ticket (100 per page) is part of the floor, as
is one `GET /tickets/{id}/time_entries` per changed ticket with a newly logged entry. The
allowance is the agents, groups and companies lists. Zendesk and Intercom have their own
floor functions (`zendesk_floor`, `intercom_floor`); their look-back windows are allowances: Zendesk
re-reads CSAT offered within `csat_lookback` of the newest offer seen (late answers) and probes the
other CSAT flavour once; Intercom's contact search compares whole days, so a day's slack of
contacts is read again; its companies directory is read once a day. The ratio calls / floor should stay
within 1.1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.base import Connector
from connectors.http import ClientOwner
from connectors.intercom.connector import CONTACT_DAY_SLACK
from connectors.registry import build_connector, plugin
from connectors.sandbox import fake_class
from connectors.sandbox.server import FakeApi
from connectors.sandbox.world import SOURCE_WEIGHTS, World
from connectors.zendesk.connector import ZendeskConnector
from kpi_core.insight_pass import InsightPass
from kpi_core.settings import InsightSettings, Settings
from kpi_core.store import Store, open_store
from kpi_core.sync import sync_source


@dataclass(frozen=True)
class SourceBench:
    """What the bench needs to know about one helpdesk."""

    # stream -> (what its records are, how many the fake holds, largest page size)
    volumes: Callable[[FakeApi], dict[str, tuple[str, int, int]]]
    # calls a first sync makes beyond paging (a feature probe, say)
    extra_calls: dict[str, int]
    stream_of_path: Callable[[str], str]


def zendesk_volumes(fake: Any) -> dict[str, tuple[str, int, int]]:
    index = fake.index()
    return {
        "users": ("users", len(index.users), 1000),
        "groups": ("groups", len(fake.data.groups), 100),
        "organizations": ("organizations", len(index.organizations), 1000),
        "tickets": ("tickets", len(index.tickets), 1000),
        "ticket_events": ("ticket events", len(index.events), 1000),
        "csat": ("ratings offered", len(index.ratings), 100),
    }


# Matched in this order against the URL with its query: the ticket export's `include=` names other streams.
ZENDESK_PATHS = {"tickets/cursor": "tickets", "users/cursor": "users", "groups": "groups",
                 "organizations": "organizations", "ticket_events": "ticket_events", "satisfaction_ratings": "csat",
                 "survey_responses": "csat"}

def _live(fake: Any) -> list[Any]:
    return [t for t in fake.world.sources[fake.name].tickets.values() if not t.deleted and not t.spam]


def intercom_volumes(fake: Any) -> dict[str, tuple[str, int, int]]:
    data = fake.world.sources["intercom"]
    live = _live(fake)
    return {
        "admins": ("admins", len(data.agents()) + len(data.bots()), 1000),
        "teams": ("teams", len(data.groups), 1000),
        "contacts": ("contacts", len(data.customers()), 150),
        "companies": ("companies", len(data.organizations), 50),
        "tickets": ("conversations", len(live), 150),
        # Parts come only one conversation at a time: the API has no bulk endpoint for them.
        "parts": ("conversations", len(live), 1),
    }


def freshdesk_volumes(fake: Any) -> dict[str, tuple[str, int, int]]:
    data = fake.world.sources["freshdesk"]
    live = _live(fake)
    entries = sum(len(fake.render_time_entries(t)) for t in data.tickets.values())
    answered = sum(1 for t in data.tickets.values() if t.rating and t.rating.answered_at is not None)
    return {
        "reference": ("lists: agents, groups, companies", 3, 1),
        "contacts": ("contacts", len(data.customers()), 100),
        "tickets": ("tickets", len(live), 100),
        "removed": ("filters: deleted, spam", 2, 1),
        # Conversations come only one ticket at a time (100 per call).
        "conversations": ("tickets", len(live), 1),
        "time_entries": ("time entries", entries, 100),
        "ratings": ("ratings", answered, 100),
    }


INTERCOM_PATHS = {"/conversations/search": "tickets", "/conversations/": "parts", "/contacts": "contacts",
                  "/companies": "companies", "/admins": "admins", "/teams": "teams"}
FRESHDESK_PATHS = {"/conversations": "conversations", "filter=": "removed", "/tickets": "tickets",
                   "/contacts": "contacts", "/time_entries": "time_entries", "/satisfaction_ratings": "ratings",
                   "/agents": "reference", "/groups": "reference", "/companies": "reference"}


def _stream_of(paths: dict[str, str]) -> Callable[[str], str]:
    return lambda url: next((s for k, s in paths.items() if k in url), url)


SOURCES: dict[str, SourceBench] = {
    "zendesk": SourceBench(
        volumes=zendesk_volumes,
        extra_calls={"csat": 1},  # csat = "auto" asks the new-CSAT endpoint once
        stream_of_path=_stream_of(ZENDESK_PATHS),
    ),
    "intercom": SourceBench(volumes=intercom_volumes, extra_calls={}, stream_of_path=_stream_of(INTERCOM_PATHS)),
    "freshdesk": SourceBench(volumes=freshdesk_volumes, extra_calls={}, stream_of_path=_stream_of(FRESHDESK_PATHS)),
}


# --- the second sync after many changes -------------------------------------------------


def _pages(count: int, page: int) -> int:
    return max(1, math.ceil(count / page))


def freshdesk_floor(fake: Any, since: int, changed: set[int]) -> dict[str, int]:
    """Fewest calls a second sync needs for the changes made since `since` (see the module docstring)."""
    data = fake.world.sources["freshdesk"]
    live = [data.tickets[i] for i in changed if not data.tickets[i].deleted and not data.tickets[i].spam]
    new_entries = [e for t in data.tickets.values() for e in fake.render_time_entries(t) if e["_at"] >= since]
    answered = [t for t in data.tickets.values()
                if t.rating and t.rating.score is not None and (t.rating.answered_at or 0) >= since]

    def removed(flag: Callable[[Any], bool]) -> int:
        return sum(1 for t in data.tickets.values() if flag(t) and t.updated_at >= since)

    return {
        "reference": _pages(len(data.agents()) + len(data.bots()), 100) + _pages(len(data.groups), 100)
        + _pages(len(data.organizations), 100),
        "contacts": _pages(sum(1 for p in data.customers() if p.updated_at >= since), 100),
        "tickets": _pages(len(live), 100),
        "removed": _pages(removed(lambda t: t.deleted), 100) + _pages(removed(lambda t: t.spam and not t.deleted), 100),
        "conversations": sum(_pages(len([m for m in t.messages if m.role != "system"]) - 1, 100) for t in live),
        "time_entries": _pages(len(new_entries), 100) + len({e["ticket_id"] for e in new_entries}),
        "ratings": _pages(len(answered), 100),
    }


def zendesk_floor(fake: Any, since: int, changed: set[int]) -> dict[str, int]:
    data = fake.world.sources["zendesk"]
    events = sum(1 for t in data.tickets.values() for m in t.messages if m.created_at >= since) + sum(
        1 for t in data.tickets.values() for c in t.status_changes if c.at >= since)
    return {
        "users": _pages(sum(1 for p in data.people.values() if p.updated_at >= since), 1000),
        "groups": _pages(len(data.groups), 100),
        "organizations": _pages(sum(1 for o in data.organizations.values() if o.updated_at >= since), 1000),
        "tickets": _pages(len(changed), 1000),
        "ticket_events": _pages(events, 1000),
        "csat": _zendesk_csat_floor(data, since),
    }


def _zendesk_csat_floor(data: Any, since: int) -> int:
    """Legacy ratings re-read over the connector's look-back from the newest offer seen (late answers come
    in that window), plus one call for the other CSAT flavour, probed each sync (allowance)."""
    offers = [t.rating.offered_at for t in data.tickets.values() if t.rating]
    seen = [at for at in offers if at < since]
    window = (max(seen) if seen else since) - int(ZendeskConnector.csat_lookback.total_seconds())
    return _pages(sum(1 for at in offers if at >= window), 100) + 1


def intercom_floor(fake: Any, since: int, changed: set[int]) -> dict[str, int]:
    data = fake.world.sources["intercom"]
    return {
        "admins": 1, "teams": 1,
        # Contact search compares whole days: the connector re-reads a day's slack before its bookmark.
        "contacts": _pages(sum(1 for p in data.customers() if p.updated_at >= since - CONTACT_DAY_SLACK), 150),
        # The companies directory is re-read once a day (COMPANIES_EVERY_SECONDS), not on a second sync minutes later.
        "companies": 0,
        "tickets": _pages(len(changed), 150),
        # Parts come only one conversation at a time: the API has no bulk endpoint for them.
        "parts": len(changed),
    }


FLOORS: dict[str, Callable[[Any, int, set[int]], dict[str, int]]] = {
    "freshdesk": freshdesk_floor, "zendesk": zendesk_floor, "intercom": intercom_floor}


def second_sync(source: str, tickets: int, changed: int, seed: int) -> str:
    """First sync, `changed` tickets change, second sync: its calls by stream against the floor."""
    from urllib.parse import urlencode

    world = World(seed=seed, tickets=math.ceil(tickets / SOURCE_WEIGHTS[source]))
    fake = fake_class(source)(world)
    fake.nominal_limit = 100_000
    fake.start()
    try:
        settings = plugin(source).settings.model_validate(fake.connector_settings())
        with tempfile.TemporaryDirectory() as tmp:
            store = open_store(os.path.join(tmp, "bench.sqlite"))
            first = sync_source(store, build_connector(source, settings))
            assert first.ok, first.error
            since = world.tick()
            ids = set(world.mutate(source, changed))
            fake.clear_log()
            started = time.perf_counter()
            second = sync_source(store, build_connector(source, settings))
            wall = time.perf_counter() - started
            assert second.ok, second.error
            store.close()
        stream_of = SOURCES[source].stream_of_path
        calls: Counter[str] = Counter(
            stream_of(f"{r.path}?{urlencode(r.query, doseq=True)}") for r in fake.calls())
        floor = FLOORS[source](fake, since, ids)
    finally:
        fake.stop()
    total, minimum = sum(calls.values()), sum(floor.values())
    lines = [f"{source}: second sync after {len(ids):,} changed tickets (of {tickets:,}): {total:,} calls,"
             f" floor {minimum:,}, ratio {total / minimum:.3f}; {wall:.1f} s; load {_load()}",
             f"  records stored by stream: {second.by_stream}",
             f"  {'stream':<16}{'calls':>8}{'floor':>8}"]
    for stream in sorted(set(calls) | set(floor)):
        lines.append(f"  {stream:<16}{calls.get(stream, 0):>8}{floor.get(stream, 0):>8}")
    return "\n".join(lines)


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()
    except OSError:
        return "?"


# --- the sandbox subprocess -------------------------------------------------------------


def serve(source: str, tickets: int, seed: int) -> None:
    """Build the world, start the fake and print one JSON line: settings and volumes."""
    world = World(seed=seed, tickets=math.ceil(tickets / SOURCE_WEIGHTS[source]))
    fake = fake_class(source)(world)
    fake.nominal_limit = 100_000  # never make the client wait: the bench measures this program
    fake.start()
    volumes = SOURCES[source].volumes(fake)
    print(json.dumps({"settings": fake.connector_settings(), "volumes": volumes}), flush=True)
    sys.stdin.read()  # serve until the parent closes our stdin


# --- the syncing subprocess -------------------------------------------------------------


def sync_once(source: str, settings: dict[str, Any], store_path: str, insight: bool = False) -> None:
    """One full sync; prints wall/HTTP times, peak RSS and calls by stream as JSON.

    `insight`: as with `[insight] enabled` (and bodies not stored): the connector reads message bodies and
    every page is analysed before it is stored; the analysers' CPU time is measured apart."""
    section = plugin(source).settings.model_validate(settings)  # as [connectors.SOURCE] is validated
    analysis: InsightPass | None = None
    if insight:
        on = Settings(insight=InsightSettings(enabled=True))  # its [privacy] now reads bodies (not storing them)
        section.with_privacy(on.privacy)
        analysis = InsightPass.from_settings(on)
    connector = build_connector(source, section)
    timing = _instrument(connector, SOURCES[source].stream_of_path)
    timing["insight_cpu"] = 0.0
    store = open_store(store_path)
    _time_store(store, timing)
    if analysis is not None:
        _time_insight(analysis, timing)
    started, started_cpu = time.perf_counter(), time.thread_time()
    result = sync_source(store, connector, insight=analysis)
    wall, cpu = time.perf_counter() - started, time.thread_time() - started_cpu
    bodies = store.db.execute("SELECT count(body) FROM messages").fetchone()[0]
    counts = {t: store.count(t) for t in ("contacts", "messages", "status_events", "people", "survey_responses")}
    store.close()
    connector.close()
    print(json.dumps({
        "ok": result.ok, "error": result.error, "wall_s": wall, "http_s": timing["http"],
        "network_s": timing["network"], "cpu_s": cpu, "http_cpu_s": timing["http_cpu"],
        "store_cpu_s": timing["store_cpu"], "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "calls": timing["calls"], "stored": counts, "insight_cpu_s": timing["insight_cpu"],
        "analysed": analysis.analysed if analysis else 0, "bodies_stored": bodies,
    }))


def _instrument(connector: Connector, stream_of_path: Callable[[str], str]) -> dict[str, Any]:
    """Time spent inside the HTTP client (wall and CPU; and on the wire), and calls by stream."""
    assert isinstance(connector, ClientOwner), f"{connector.name}: no HTTP client to instrument"
    client = connector.client
    timing: dict[str, Any] = {"http": 0.0, "http_cpu": 0.0, "network": 0.0, "store_cpu": 0.0, "calls": Counter()}
    request, send = client.request, client.session.request

    def timed_request(method: str, path: str, **kwargs: Any) -> Any:
        started, started_cpu = time.perf_counter(), time.thread_time()
        try:
            return request(method, path, **kwargs)
        finally:
            timing["http"] += time.perf_counter() - started
            timing["http_cpu"] += time.thread_time() - started_cpu

    def timed_send(method: str, url: str, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return send(method, url, **kwargs)
        finally:
            timing["network"] += time.perf_counter() - started
            query = "&".join(f"{k}={v}" for k, v in (kwargs.get("params") or {}).items())
            timing["calls"][stream_of_path(f"{url}?{query}")] += 1

    client.request, client.session.request = timed_request, timed_send
    return timing


def _time_store(store: Store, timing: dict[str, Any]) -> None:
    """CPU spent storing pages and deriving their facts (upserts, settle, commits), to tell it from normalizing."""

    def timed(method: Callable[..., int]) -> Callable[..., int]:
        def call(*args: Any, **kwargs: Any) -> int:
            started = time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                timing["store_cpu"] += time.thread_time() - started
        return call

    store.write_pages = timed(store.write_pages)  # type: ignore[method-assign]
    store.settle = timed(store.settle)  # type: ignore[method-assign]


def _time_insight(analysis: InsightPass, timing: dict[str, Any]) -> None:
    """CPU spent analysing pages (language, sentiment, topic) and dropping their bodies."""
    apply = analysis.apply

    def timed(page: Any, roles: Any = None) -> None:
        started = time.thread_time()
        try:
            apply(page, roles)
        finally:
            timing["insight_cpu"] += time.thread_time() - started

    analysis.apply = timed  # type: ignore[method-assign]


# --- the driver ---------------------------------------------------------------------------


def run_size(source: str, tickets: int, seed: int, insight: bool = False) -> dict[str, Any]:
    me = [sys.executable, str(Path(__file__).resolve())]
    server = subprocess.Popen([*me, "--serve", "--source", source, "--tickets", str(tickets), "--seed", str(seed)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        sandbox = json.loads(server.stdout.readline())
        with tempfile.TemporaryDirectory() as tmp:
            worker = subprocess.run([*me, "--worker", "--source", source, "--settings", json.dumps(sandbox["settings"]),
                                     "--store", os.path.join(tmp, "bench.sqlite"), *(["--insight"] if insight else [])],
                                    capture_output=True, text=True, check=True)
        stats = json.loads(worker.stdout.strip().splitlines()[-1])
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(30)
    return {**stats, "volumes": sandbox["volumes"]}


def report(source: str, stats: dict[str, Any]) -> str:
    volumes: dict[str, list[Any]] = stats["volumes"]
    tickets = volumes["tickets"][1]
    local = stats["wall_s"] - stats["http_s"]
    local_cpu = stats["cpu_s"] - stats["http_cpu_s"]
    store_cpu = stats["store_cpu_s"]
    lines = [
        f"{source}: {tickets:,} tickets ({stats['stored']['messages']:,} messages,"
        f" {stats['stored']['people']:,} people) -> {'ok' if stats['ok'] else 'FAILED: ' + str(stats['error'])}",
        f"  wall {stats['wall_s']:.1f} s = local (normalize + store) {local:.1f} s"
        f" + inside the HTTP client {stats['http_s']:.1f} s"
        f" (of which waiting on the server {stats['network_s']:.1f} s)",
        f"  CPU of the syncing process {stats['cpu_s']:.1f} s = normalize {local_cpu - store_cpu:.1f} s"
        f" + store {store_cpu:.1f} s + HTTP client (JSON decoding, requests) {stats['http_cpu_s']:.1f} s",
        f"  local processing: {tickets / local_cpu:,.0f} tickets/s by CPU time ({tickets / local:,.0f} by wall"
        f" time); normalizing alone {tickets / (local_cpu - store_cpu):,.0f} tickets/s",
        f"  peak RSS of the syncing process: {stats['peak_rss_mb']:.0f} MB",
        f"  {'stream':<14}{'records':>28}{'calls':>8}{'minimum':>9}{'per 1k tickets':>16}{'minimum':>9}",
    ]
    extra = SOURCES[source].extra_calls
    for stream, (what, count, page) in volumes.items():
        calls = stats["calls"].get(stream, 0)
        minimum = max(1, math.ceil(count / page)) + extra.get(stream, 0)
        lines.append(f"  {stream:<14}{count:>12,} {what:<15}{calls:>8}{minimum:>9}"
                     f"{1000 * calls / tickets:>16.2f}{1000 * minimum / tickets:>9.2f}")
    return "\n".join(lines)


def side_by_side(source: str, plain: dict[str, Any], insight: dict[str, Any]) -> str:
    """The runs without and with insight: tickets/s of local processing (CPU time) and peak RSS."""
    tickets = plain["volumes"]["tickets"][1]

    def rate(stats: dict[str, Any]) -> float:
        return float(tickets / (stats["cpu_s"] - stats["http_cpu_s"]))

    analysed, insight_cpu = insight["analysed"], insight["insight_cpu_s"]
    return "\n".join([
        f"{source}: {tickets:,} tickets, conversation insight off -> on",
        f"  local processing: {rate(plain):,.0f} -> {rate(insight):,.0f} tickets/s by CPU time"
        f" (goal with insight: >= 1,000)",
        f"  peak RSS of the syncing process: {plain['peak_rss_mb']:.0f} -> {insight['peak_rss_mb']:.0f} MB",
        f"  analysis: {analysed:,} messages in {insight_cpu:.1f} s CPU"
        f" ({analysed / insight_cpu if insight_cpu else 0:,.0f} messages/s); bodies stored: {insight['bodies_stored']}",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", nargs="*", type=int, default=[50_000, 200_000], help="tickets of the source")
    parser.add_argument("--source", default="zendesk", choices=sorted(SOURCES))
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--second-sync", action="store_true",
                        help="measure a second sync after --changed tickets change, against its floor")
    parser.add_argument("--changed", type=int, default=1000, help="tickets changed before the second sync")
    parser.add_argument("--insight", action="store_true",
                        help="each size without and with conversation insight, side by side")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tickets", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.source, args.tickets, args.seed)
    elif args.worker:
        sync_once(args.source, json.loads(args.settings), args.store, insight=args.insight)
    elif args.second_sync:
        for size in args.sizes if args.sizes != [50_000, 200_000] else [5_000]:
            print(second_sync(args.source, size, args.changed, args.seed), flush=True)
    elif args.insight:
        for size in args.sizes:
            plain = run_size(args.source, size, args.seed)
            print(report(args.source, plain), flush=True)
            analysed = run_size(args.source, size, args.seed, insight=True)
            print(report(args.source, analysed), flush=True)
            print(side_by_side(args.source, plain, analysed), flush=True)
    else:
        for size in args.sizes:
            print(report(args.source, run_size(args.source, size, args.seed)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
