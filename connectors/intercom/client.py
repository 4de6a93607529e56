"""The HTTP client of an Intercom workspace, shared by the reading connector and the writer."""

from __future__ import annotations

import time
from collections.abc import Callable

from connectors.base import ConfigError
from connectors.http import HttpClient
from connectors.intercom.settings import IntercomSettings

SOURCE = "intercom"
REGION_HOSTS: dict[str, str] = {
    "us": "https://api.intercom.io",
    "eu": "https://api.eu.intercom.io",
    "au": "https://api.au.intercom.io",
}


def client(settings: IntercomSettings, *, sleep: Callable[[float], None] = time.sleep) -> HttpClient:
    """A client for the workspace's region (or `base_url`), with its access token and API version."""
    token = settings.access_token.get_secret_value() if settings.access_token else ""
    if not token:
        raise ConfigError(f"{SOURCE}: access_token is not set")
    return HttpClient(
        SOURCE, settings.base_url or REGION_HOSTS[settings.region],
        headers={"Authorization": f"Bearer {token}", "Intercom-Version": settings.api_version},
        timeout=settings.timeout_seconds, max_attempts=settings.max_attempts, sleep=sleep,
    )
