"""`[connectors.intercom]`: the workspace's access token, its region and the API version asked for."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, model_validator

from connectors.settings import ConnectorSettings, has_secret


class IntercomSettings(ConnectorSettings):
    access_token: SecretStr | None = None
    region: Literal["us", "eu", "au"] = "us"
    api_version: str = "2.14"

    @model_validator(mode="after")
    def _check_account(self) -> IntercomSettings:
        if self.enabled and not has_secret(self.access_token):
            raise ValueError("set access_token")
        return self
