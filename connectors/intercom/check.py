"""`check-config --online` for Intercom: `GET /me`, the admin that owns the access token.

An access token belongs to one workspace in one region; asked in another region's API host
it is unknown there (401), so the region is named in that message.
"""

from __future__ import annotations

from typing import Any

from connectors.base import CheckResult
from connectors.checking import Hints, host_of, probe
from connectors.http import HttpClient
from connectors.intercom.settings import IntercomSettings

PATH = "/me"


def check(client: HttpClient, settings: IntercomSettings) -> CheckResult:
    where = "base_url" if settings.base_url else f"region ({settings.region!r}: the workspace's data location)"
    hints = Hints(
        rejected=f"check access_token (revoked, or the app was uninstalled) and {where}",
        forbidden="the app lacks a permission, or the workspace's plan has no API access",
        not_found=f"check {where}",
    )
    return probe(client, PATH, hints, lambda data: _read(data, host_of(client.base_url)))


def _read(data: Any, host: str) -> CheckResult:
    if not isinstance(data, dict) or data.get("type") != "admin" or data.get("id") is None:
        return CheckResult(host, f"{host} answered without the token's admin: check base_url")
    app = data.get("app") if isinstance(data.get("app"), dict) else {}
    workspace = f" in workspace {app['name']!r}" if isinstance(app, dict) and app.get("name") else ""
    return CheckResult(host, identity=f"admin {data.get('email') or '#' + str(data['id'])}{workspace}")
