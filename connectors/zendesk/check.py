"""`check-config --online` for Zendesk: `GET /api/v2/users/me`, the user the credentials act as.

Zendesk answers that endpoint with 200 and its *anonymous user* (no `id`, role `end-user`)
where credentials are missing or not taken as a sign-in, instead of a 401; so the answer's
`id` and `role` are checked too. The incremental exports and satisfaction ratings the
connector reads are for admins: an agent's or end user's credentials are refused before
any sync.
"""

from __future__ import annotations

from typing import Any

from connectors.base import CheckResult
from connectors.checking import Hints, host_of, probe
from connectors.http import HttpClient
from connectors.zendesk.settings import ZendeskSettings

PATH = "/api/v2/users/me.json"


def check(client: HttpClient, settings: ZendeskSettings) -> CheckResult:
    account = "base_url" if settings.base_url else f"subdomain ({settings.subdomain!r})"
    hints = Hints(
        rejected=_credentials(settings) + " (an API token needs token access turned on in Admin Center →"
                 " Apps and integrations → APIs → Zendesk API)",
        forbidden="the user lacks a permission, or the account's plan has no API access",
        not_found=f"check {account}",
    )
    return probe(client, PATH, hints, lambda data: _read(data, client.base_url, settings))


def _credentials(settings: ZendeskSettings) -> str:
    if settings.oauth_token is not None and settings.oauth_token.get_secret_value():
        return "check oauth_token (expired or revoked?)"
    return f"check email ({settings.email!r}) and api_token"


def _read(data: Any, base_url: str, settings: ZendeskSettings) -> CheckResult:
    host = host_of(base_url)
    user = data.get("user") if isinstance(data, dict) else None
    if not isinstance(user, dict):
        return CheckResult(host, f"{host} answered without a user: check base_url")
    role = user.get("role")
    if user.get("id") is None:
        return CheckResult(host, f"{host} did not sign the credentials in (it answered as the anonymous user):"
                                 f" {_credentials(settings)}")
    who = f"{role} {user.get('email') or '#' + str(user['id'])}"
    if role != "admin":
        return CheckResult(host, f"the credentials act as {who}, not an admin: the incremental exports and"
                                 " satisfaction ratings need an admin's token", who)
    return CheckResult(host, identity=who)
