"""What the three writers share: turning API errors into per-record results, and sending a note once.

A write of absolute values (a PUT of custom fields) is idempotent, so the HTTP client
retries it on 429 and 5xx like any read. A note is not: a POST that timed out or met a 5xx
may have been stored, and sending it again would post it twice. It is therefore sent with
retries off, except for a 429, which every one of these APIs answers before doing anything
(the request is refused, not half-done), so waiting out `Retry-After` and sending again
is safe.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable
from typing import Any

from connectors.base import (
    AuthError,
    FatalApiError,
    MalformedResponse,
    PermissionDenied,
    RetryableApiError,
    SyncError,
    WriteRequest,
    WriteResult,
)
from connectors.http import ApiResponse, ClientOwner, HttpClient

log = logging.getLogger(__name__)

NOTE_429_ATTEMPTS = 5


class HttpWriter(ClientOwner):
    """The part every writer shares: it owns one HTTP client, counts its calls and closes it (`ClientOwner`)."""


def attempt(request: WriteRequest, send: Callable[[], Any]) -> WriteResult:
    """Run one idempotent write; a refusal of this record becomes a failed result.

    Bad credentials and missing permissions concern every record, and an unreachable
    helpdesk every later one too: those are raised for the caller to stop on.
    """
    try:
        send()
    except (AuthError, PermissionDenied):
        raise
    except (FatalApiError, RetryableApiError, MalformedResponse) as exc:
        return WriteResult(request, False, str(exc))
    return WriteResult(request, True)


def attempt_note(client: HttpClient, request: WriteRequest, method: str, path: str, body: Any,
                 sleep: Callable[[float], None] = time.sleep) -> WriteResult:
    """Send a note once (see the module docstring); a 5xx or lost answer leaves it uncertain."""
    try:
        send_once(client, method, path, body, sleep)
    except (AuthError, PermissionDenied):
        raise
    except FatalApiError as exc:
        return WriteResult(request, False, str(exc))
    except RetryableApiError as exc:
        return WriteResult(request, False, str(exc), certain=exc.status == 429)
    except (MalformedResponse, SyncError) as exc:
        return WriteResult(request, False, f"{exc} (the note may have been added; not sent again)", certain=False)
    return WriteResult(request, True)


def send_once(client: HttpClient, method: str, path: str, body: Any,
              sleep: Callable[[float], None] = time.sleep) -> ApiResponse:
    """A non-idempotent request: never repeated, except after a 429 (refused unprocessed)."""
    for number in range(1, NOTE_429_ATTEMPTS + 1):
        try:
            return client.request(method, path, json_body=body, idempotent=False)
        except RetryableApiError as exc:
            if exc.status != 429 or number == NOTE_429_ATTEMPTS:
                raise
            wait = min(exc.retry_after if exc.retry_after is not None else 2.0 ** number, client.max_wait)
            log.warning("%s (note not added; sending again in %.1fs)", exc, wait)
            sleep(wait)
    raise AssertionError("unreachable")


def note_html(text: str) -> str:
    """A plain-text note as the minimal HTML Intercom and Freshdesk expect."""
    return "<p>" + html.escape(text).replace("\n", "<br>") + "</p>"


def slug(text: str) -> str:
    """Lower-case letters, digits and underscores (how Freshdesk names a field from its label)."""
    out = "".join(c if c.isalnum() else "_" for c in text.strip().lower())
    return "_".join(part for part in out.split("_") if part)
