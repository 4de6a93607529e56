"""The HTTP client of a Freshdesk account, shared by the reading connector and the writer."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from connectors.base import ConfigError
from connectors.freshdesk.settings import FreshdeskSettings
from connectors.http import HttpClient

SOURCE = "freshdesk"


def client(settings: FreshdeskSettings, *, sleep: Callable[[float], None] = time.sleep) -> HttpClient:
    """A client for `<domain>.freshdesk.com` (or `base_url`), authenticated by API key."""
    if settings.api_key is None or not settings.api_key.get_secret_value():
        raise ConfigError("freshdesk: set connectors.freshdesk.api_key")
    if not settings.base_url and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", settings.domain):
        raise ConfigError(
            "freshdesk: connectors.freshdesk.domain must be the subdomain only, e.g. 'acme' for acme.freshdesk.com"
        )
    base_url = settings.base_url or f"https://{settings.domain}.freshdesk.com"
    # Freshdesk takes the key as the user name of basic auth, with any password.
    return HttpClient(SOURCE, base_url, auth=(settings.api_key.get_secret_value(), "X"),
                      timeout=settings.timeout_seconds, max_attempts=settings.max_attempts, sleep=sleep)
