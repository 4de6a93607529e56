"""The HTTP client of a Zendesk account, shared by the reading connector and the writer."""

from __future__ import annotations

from typing import Any

from connectors.base import ConfigError
from connectors.http import HttpClient
from connectors.zendesk.settings import ZendeskSettings

SOURCE = "zendesk"


def client(settings: ZendeskSettings) -> HttpClient:
    """A client for the account's base URL, authenticated by OAuth token or by e-mail and API token."""
    base_url = settings.base_url or f"https://{settings.subdomain}.zendesk.com"
    options: dict[str, Any] = {"timeout": settings.timeout_seconds, "max_attempts": settings.max_attempts}
    if settings.oauth_token is not None and settings.oauth_token.get_secret_value():
        bearer = {"Authorization": f"Bearer {settings.oauth_token.get_secret_value()}"}
        return HttpClient(SOURCE, base_url, headers=bearer, **options)
    if settings.api_token is None or not settings.email:
        raise ConfigError(f"{SOURCE}: set api_token (with email) or oauth_token")
    return HttpClient(SOURCE, base_url, auth=(f"{settings.email}/token", settings.api_token.get_secret_value()),
                      **options)
