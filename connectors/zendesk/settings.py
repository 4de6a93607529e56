"""`[connectors.zendesk]`: the account, its credentials and which CSAT and tickets to read."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from connectors.settings import ConnectorSettings, has_secret


class ZendeskSettings(ConnectorSettings):
    subdomain: str = ""
    email: str = ""
    api_token: SecretStr | None = None
    oauth_token: SecretStr | None = None
    csat: Literal["auto", "legacy", "survey_responses", "none"] = "auto"
    include_ai_agent_tickets: bool = True
    # Handle time (catalogue 2c: what the source records). A time-tracking app's ticket field holding
    # the seconds spent (the Time Tracking app's "Total time spent (sec)"), by field id; it wins over Talk.
    handle_time_field: int | None = Field(default=None, ge=1)
    # Talk call durations of resolved voice tickets, read from each one's comments (one call per such
    # ticket changed since the last sync); off: phone tickets without the field above have no handle time.
    talk_call_durations: bool = True

    @model_validator(mode="after")
    def _check_account(self) -> ZendeskSettings:
        if not self.enabled:
            return self
        if not (self.subdomain or self.base_url):
            raise ValueError("set subdomain (or base_url)")
        if not (has_secret(self.api_token) or has_secret(self.oauth_token)):
            raise ValueError("set api_token (with email) or oauth_token")
        if has_secret(self.api_token) and not self.email:
            raise ValueError("api_token needs email (the admin's address)")
        return self
