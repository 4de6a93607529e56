"""Sending a digest to its sinks (e-mail, webhook, file) and remembering what was sent, in the store.

A digest counts as sent per sink: `digests_sent` keeps, per cadence and period, the sinks it reached.
A later attempt (the daemon's next check) sends only to the sinks still missing, so a webhook that was
down never makes the e-mail go twice, and a restart never sends again what was sent.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from kpi_core.delivery import DeliveryError, post_json, send_email, sink_host, slack_body
from kpi_core.digests import render
from kpi_core.digests.gather import Digest
from kpi_core.kpis.periods import Period
from kpi_core.settings import DigestSinks, Settings
from kpi_core.store import Store, utc_now

log = logging.getLogger(__name__)

EMAIL, WEBHOOK, FILE = "email", "webhook", "file"


def configured(settings: Settings, cadence: str) -> list[str]:
    """The sinks the digest of `cadence` goes to (`[digests.to.<cadence>]`, else `[digests]`), in the order
    they are tried."""
    d = settings.digests.sinks_of(cadence)
    return [name for name, on in ((EMAIL, d.email_to), (WEBHOOK, d.webhook_url), (FILE, d.file_dir)) if on]


def table_of(settings: Settings, cadence: str) -> str:
    """The configuration table holding the sinks of `cadence`, to name in an error."""
    return f"[digests.to.{cadence}]" if cadence in settings.digests.to else "[digests]"


def describe(settings: Settings, sink: str, cadence: str) -> str:
    """Where a sink delivers, safe to print: addresses and hosts, never a webhook's path or a password."""
    d = settings.digests.sinks_of(cadence)
    if sink == EMAIL:
        server = f"{settings.smtp.host}:{settings.smtp.port}" if settings.smtp.host else "(no [smtp] host)"
        return f"e-mail to {', '.join(d.email_to)} through {server}"
    if sink == WEBHOOK:
        url = d.webhook_url.get_secret_value() if d.webhook_url else ""
        return f"webhook at {sink_host(url)} ({d.webhook_style} body)"
    return f"files in {Path(d.file_dir).expanduser()}"


def file_stem(digest: Digest) -> str:
    return f"digest-{digest.cadence}-{digest.period.label()}"


@dataclass
class Sent:
    """What one attempt delivered and what failed (one sentence per failed sink)."""

    delivered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def sent_sinks(store: Store, cadence: str, period: Period) -> list[str]:
    """The sinks the digest of `cadence` for `period` has reached already."""
    row = store.db.conn.execute("SELECT sinks FROM digests_sent WHERE cadence = ? AND period_start = ?",
                                [cadence, period.start.isoformat()]).fetchone()
    return list(json.loads(row[0])) if row else []


def deliver(store: Store, settings: Settings, digest: Digest, sinks: list[str]) -> Sent:
    """Send `digest` to each of `sinks`, recording each success in the store as it happens."""
    text, page = render.text(digest), render.html(digest)
    to = settings.digests.sinks_of(digest.cadence)
    result = Sent()
    for sink in sinks:
        try:
            if sink == EMAIL:
                send_email(settings.smtp, to.email_to, digest.title, text, page)
            elif sink == WEBHOOK:
                _post(to, digest, text)
            else:
                result.files += _write_files(Path(to.file_dir).expanduser(), digest, text, page)
        except DeliveryError as exc:
            result.failed[sink] = str(exc)
            log.error("digest %s: %s", digest.title, exc)
            continue
        except OSError as exc:
            where = exc.filename or to.file_dir
            result.failed[sink] = (f"{table_of(settings, digest.cadence)} file_dir: cannot write {where}:"
                                   f" {exc.strerror or exc}")
            log.error("digest %s: %s", digest.title, result.failed[sink])
            continue
        result.delivered.append(sink)
        _record(store, digest, sink)
        log.info("digest %s sent: %s", digest.title, describe(settings, sink, digest.cadence))
    return result


def _post(to: DigestSinks, digest: Digest, text: str) -> None:
    url = to.webhook_url
    assert url is not None  # only a configured sink is delivered to
    if to.webhook_style == "slack":
        payload = slack_body(digest.title, render.slack_lines(digest))
    else:
        payload = {**digest.as_json(), "text": text}
    post_json(url.get_secret_value(), payload)


def _write_files(folder: Path, digest: Digest, text: str, page: str) -> list[Path]:
    """`digest-weekly-2026-W48.html` and `.txt` in `folder`, each replaced in one step."""
    if not folder.is_dir():
        raise OSError(2, "the folder does not exist", str(folder))
    written = []
    for suffix, body in ((".html", page), (".txt", text)):
        target = folder / (file_stem(digest) + suffix)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(body)
            os.chmod(tmp, 0o644)  # aggregated figures, made to be shared
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(target)
    return written


def _record(store: Store, digest: Digest, sink: str) -> None:
    with store.db.atomic():
        have = sent_sinks(store, digest.cadence, digest.period)
        store.db.conn.execute(
            "INSERT INTO digests_sent (cadence, period_start, period_end, sent_at, sinks) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (cadence, period_start) DO UPDATE SET sent_at = excluded.sent_at, sinks = excluded.sinks",
            [digest.cadence, digest.period.start.isoformat(), digest.period.end.isoformat(), utc_now(),
             json.dumps(sorted({*have, sink}))])
