"""`helpdesk-kpi forget` (erase one person) and `helpdesk-kpi purge` (delete what is past retention)."""

from __future__ import annotations

import argparse
from typing import Any

from connectors import registry
from kpi_core import privacy
from kpi_core.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    command,
    err,
    helpdesk_names,
    out,
    settings_from,
    store_from,
)
from kpi_core.model import email_hash
from kpi_core.settings import Settings
from kpi_core.store import account_schema


@command("forget")
def cmd_forget(args: argparse.Namespace) -> int:
    """Erase one person: their contacts, messages, survey answers, write-back and quarantine rows."""
    if bool(args.requester) == bool(args.email):
        raise UsageError("give either --source NAME --requester ID or --email ADDRESS")
    if args.requester and not args.source:
        raise UsageError("--requester needs --source (the helpdesk whose id it is)")
    if args.source and args.source not in registry.names():
        raise UsageError(f"--source {args.source}: unknown helpdesk (known: {', '.join(registry.names())})")
    settings = settings_from(args)
    store = store_from(settings)
    try:
        keys: list[str] = []
        if args.requester:
            people = [privacy.person(store, args.source, args.requester)]
        else:
            try:
                people = privacy.people_by_email(store, args.email, settings.privacy.hash_key_bytes(), args.source)
            except privacy.PrivacyError as exc:
                raise UsageError(str(exc)) from None
            hash_key = settings.privacy.hash_key_bytes()
            if hash_key is not None and args.source is None:  # a shop's customer the helpdesks may not know
                keys.append(email_hash(args.email.strip().lower(), hash_key))
        deletion = privacy.forget(store, settings, people, customer_keys=keys)
    finally:
        store.close()
    who = ", ".join(f"{p.source} {p.id}" + (f" ({p.role})" if p.role else "") for p in people) or "a shop customer"
    if deletion.total == 0:
        # Nothing matched what was asked to erase: a mistyped id must not read as a success.
        asked = f"{args.source} requester {args.requester}" if args.requester else "that address"
        err(f"forget: nothing is stored for {asked}: nothing deleted (check the id and --source)")
        return EXIT_FAILED
    out(f"forget {who}:")
    _print_counts(deletion)
    for note in deletion.notes:
        out(f"note: {note}")
    _print_wal(deletion, settings)
    out(f"KPI values were kept: they are aggregates and name no one. {_periods(deletion.frozen)} they fall in"
            " had ended and are now frozen (final); the running periods were recomputed without them.")
    sources = sorted({p.source for p in people} | ({"the shop"} if deletion.counts.get("orders") else set()))
    out(f"A later sync brings back only what {', '.join(sources)} still holds: delete the person there too,"
        " or the next sync stores their records again.")
    return EXIT_OK


@command("purge")
def cmd_purge(args: argparse.Namespace) -> int:
    """Delete contacts idle for longer than [privacy] retention_days, after computing and freezing their KPI values."""
    settings = settings_from(args)
    store = store_from(settings)
    days = settings.privacy.retention_days
    try:
        if args.dry_run:
            plan = privacy.purge_plan(store, settings)
            out(f"purge --dry-run: retention {days} days: contacts with no activity since {plan.cutoff}")
            out(f"would delete {plan.contacts:,} contacts (created from {plan.oldest or '-'}) with their messages,"
                f" events and survey answers, and {plan.loose_answers:,} older survey answers tied to no contact;"
                " the KPI values of the periods they belong to would be computed and frozen first. Nothing changed.")
            return EXIT_OK
        result = privacy.purge(store, settings)
    finally:
        store.close()
    out(f"purge: retention {days} days: contacts with no activity since {result.cutoff}")
    if result.computed_since is None:
        out("nothing is past retention (nothing deleted)")
    else:
        out(f"KPI values computed from {result.computed_since.isoformat()} first; they stay:"
            f" {_periods(result.frozen)} up to the cutoff (and any other the deleted records fall in) had ended"
            " and are now frozen (final); the running periods were recomputed from what is left.")
        _print_counts(result)
    _print_wal(result, settings)
    return EXIT_OK


def _periods(count: int) -> str:
    return f"{count:,} stored period{'' if count == 1 else 's'}"


def _print_counts(deletion: privacy.Deletion) -> None:
    width = max(len(t) for t in deletion.counts)
    for table, count in deletion.counts.items():
        out(f"  {table.ljust(width)}  {count:>9,}")
    out(f"  {'total'.ljust(width)}  {deletion.total:>9,}")


def _print_wal(deletion: privacy.Deletion, settings: Settings) -> None:
    if settings.store.url is not None:  # PostgreSQL: the tables were rewritten (privacy.rewrite_tables)
        if deletion.wal_truncated:
            out("The tables rows were deleted from were rewritten without them (VACUUM FULL): no copy of a deleted"
                " row stays in them; the server's WAL and backups keep theirs until recycled (docs/privacy.md).")
        else:
            # Running `forget` again would find nothing to delete, hence nothing to rewrite: name the statement.
            tables = ", ".join(f"{account_schema(settings.store.account)}.{t}" for t in deletion.busy)
            err(f"warning: {settings.store.shown}: another session (the daemon?) kept {', '.join(deletion.busy)}"
                f" locked past {privacy.REWRITE_LOCK_WAIT}: copies of deleted rows stay in their files until they"
                f" are rewritten; when that session is idle, run: VACUUM (FULL) {tables}")
    elif deletion.wal_truncated:
        out("Deleted rows were overwritten in the store file and its WAL was emptied.")
    else:
        err(f"warning: another process (the daemon?) kept {settings.store.path}-wal busy: copies of deleted rows"
            " stay in it until its next checkpoint; run this command again when that process is idle")


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("forget", parents=[common], help=cmd_forget.__doc__)
    p.add_argument("--source", help=f"the helpdesk the requester id belongs to ({helpdesk_names()});"
                                    " with --email: only that helpdesk")
    p.add_argument("--requester", help="the person's id in that helpdesk")
    p.add_argument("--email", help="the person's e-mail address, matched by keyed hash across every helpdesk")
    p = sub.add_parser("purge", parents=[common], help=cmd_purge.__doc__)
    p.add_argument("--dry-run", action="store_true", help="say what would be deleted; change nothing")

