"""`check-config --online` for Freshdesk: `GET /api/v2/agents/me`, the agent whose API key it is.

A key works only on its own account's domain (another domain: 401 or 404). An agent whose
ticket scope is not global (`ticket_scope` 2: their groups' tickets, 3: their own) reads only
those tickets, so every KPI would silently cover part of the account: that is a warning.
"""

from __future__ import annotations

from typing import Any

from connectors.base import CheckResult
from connectors.checking import Hints, host_of, probe
from connectors.freshdesk.settings import FreshdeskSettings
from connectors.http import HttpClient

PATH = "/api/v2/agents/me"
GLOBAL_SCOPE = 1
SCOPES = {2: "their groups' tickets", 3: "the tickets assigned to them"}


def check(client: HttpClient, settings: FreshdeskSettings) -> CheckResult:
    account = "base_url" if settings.base_url else f"domain ({settings.domain!r})"
    hints = Hints(
        rejected=f"check api_key (Profile settings → View API key) and {account}",
        forbidden="the agent lacks a permission, or the account's plan or state (suspended, trial over)"
                  " blocks the API",
        not_found=f"check {account}",
    )
    return probe(client, PATH, hints, lambda data: _read(data, host_of(client.base_url)))


def _read(data: Any, host: str) -> CheckResult:
    if not isinstance(data, dict) or data.get("id") is None:
        return CheckResult(host, f"{host} answered without the key's agent: check base_url")
    contact = data.get("contact") if isinstance(data.get("contact"), dict) else {}
    email = contact.get("email") if isinstance(contact, dict) else None
    who = f"agent {email or '#' + str(data['id'])}"
    scope = data.get("ticket_scope")
    warning = None
    if scope != GLOBAL_SCOPE and scope in SCOPES:
        warning = (f"the key's agent sees only {SCOPES[scope]}: the KPIs would cover only those;"
                   " use the key of an agent with global ticket access")
    return CheckResult(host, identity=who, warning=warning)
