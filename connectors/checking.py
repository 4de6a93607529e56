"""The online check every connector shares: one "who am I" call, its failures told as actions.

A connector's `check()` (the optional `Checkable` capability of `connectors.base`) names its
vendor's cheapest authenticated endpoint, what to say for the vendor's ways of failing
(`Hints`), and how to read the answer; `probe` makes the call and turns every failure into
one sentence naming the host. Nothing here prints a secret: messages hold the host, the
path's vendor and the keys to check, never a header or a token.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connectors.base import (
    AuthError,
    CheckResult,
    FatalApiError,
    MalformedResponse,
    PermissionDenied,
    RetryableApiError,
    SyncError,
    Unreachable,
)
from connectors.http import HttpClient

# One try: an admin waiting at a prompt should not sit through backoffs to learn that nothing
# listens on a port, and each finding is told once (a retry would log the same failure again).
ATTEMPTS = 1


@dataclass(frozen=True)
class Hints:
    """What to tell the admin, per failure, in the vendor's own words (keys, where to look)."""

    rejected: str  # 401: which keys to check
    forbidden: str  # 403: which permission or plan is missing
    not_found: str  # 404: which key names the account (subdomain, domain, region)


def probe(client: HttpClient, path: str, hints: Hints, read: Callable[[Any], CheckResult]) -> CheckResult:
    """GET `path` once and `read` its JSON; any failure as a `CheckResult` problem."""
    host = host_of(client.base_url)
    try:
        answer = client.request("GET", path, attempts=ATTEMPTS)
    except AuthError:
        return CheckResult(host, f"{host} rejected the credentials (401): {hints.rejected}")
    except PermissionDenied as exc:
        return CheckResult(host, f"{host} refused access (403{_vendor_text(exc)}): {hints.forbidden}")
    except FatalApiError as exc:
        if exc.status == 404:
            return CheckResult(host, f"{host} knows no such account (404): {hints.not_found}")
        return CheckResult(host, f"{host} answered {exc.status}{_vendor_text(exc)}: check the connector's settings")
    except Unreachable as exc:
        return CheckResult(host, f"cannot reach {exc.host}{_reason(exc)}")
    except RetryableApiError as exc:
        busy = "is rate limiting this account" if exc.status == 429 else "had a server error"
        return CheckResult(host, f"{host} {busy} ({exc.status}): try again in a minute")
    except MalformedResponse:
        return CheckResult(host, f"{host} answered with something that is not the API's JSON: check base_url")
    except SyncError as exc:
        return CheckResult(host, str(exc))
    return read(answer.data)


def host_of(base_url: str) -> str:
    """host[:port] of a base URL, as check messages name it."""
    return re.sub(r"^[a-z]+://", "", base_url).split("/", 1)[0]


def _reason(exc: Unreachable) -> str:
    """The parenthesised reason the HTTP client put at the end of its message ("connection refused ...")."""
    found = re.search(r" \(([^()]*)\)$", str(exc))
    return f" ({found.group(1)})" if found else ""


def _vendor_text(exc: SyncError) -> str:
    """The vendor's own error text the HTTP client appended in parentheses, if any."""
    found = re.search(r"\(([^()]*)\)$", str(exc))
    return f": {found.group(1)}" if found else ""
