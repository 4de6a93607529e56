"""`check-config --online`: one cheap authenticated call per enabled source, before any sync.

Each connector that can (`connectors.base.Checkable`) asks its helpdesk who its credentials
are (Zendesk `GET /api/v2/users/me`, Intercom `GET /me`, Freshdesk `GET /api/v2/agents/me`)
and says, in one sentence naming the host, what stands in the way: a rejected token (401), a
missing permission or plan (403), a wrong subdomain, domain or region (404), a host that
cannot be reached. Nothing is stored and no cursor moves. The CLI prints `format_checks` and
exits 1 unless `all_ok`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from connectors import registry
from connectors.base import CheckResult, SyncError
from connectors.checking import host_of
from connectors.settings import ConnectorSettings
from kpi_core.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class SourceCheck:
    """What the online check found for one source."""

    source: str
    host: str  # host[:port] the source is read from ("" when the connector could not be built)
    ok: bool
    problem: str | None  # one sentence an admin can act on; never a secret
    api_calls: int
    identity: str | None = None  # whom the credentials act as ("admin admin@acme.example")
    warning: str | None = None  # works, but limits what the KPIs cover


def check_sources(settings: Settings) -> list[SourceCheck]:
    """Check every enabled source, in registry order (the order `sync` follows)."""
    return [_check_one(name, section) for name, section in settings.enabled_connectors().items()]


def _check_one(name: str, section: ConnectorSettings) -> SourceCheck:
    host = host_of(section.base_url) if section.base_url else ""
    try:
        connector = registry.build_connector(name, section)
    except SyncError as exc:  # settings a connector cannot work with (e.g. a malformed domain)
        return SourceCheck(name, host, False, str(exc), 0)
    try:
        check = getattr(connector, "check", None)
        if check is None:  # a plugin without the optional capability
            return SourceCheck(name, host, True, None, 0, warning="its connector offers no online check: not tested")
        result: CheckResult = check()
    except Exception as exc:  # a plugin's own check must not stop the others' report
        log.debug("online check of %s failed", name, exc_info=True)
        return SourceCheck(name, host, False, f"the check itself failed: {exc}", connector.api_calls)
    finally:
        connector.close()
    return SourceCheck(name, result.host or host, result.ok, result.problem, connector.api_calls,
                       result.identity, result.warning)


def all_ok(checks: list[SourceCheck]) -> bool:
    """True when every checked source works (no source enabled is not a failure of this check)."""
    return all(check.ok for check in checks)


def format_checks(checks: list[SourceCheck]) -> str:
    """One line per source (and one more for a warning), for the terminal."""
    if not checks:
        return "no source is enabled: nothing to check online"
    width = max(len(check.source) for check in checks)
    lines = []
    for check in checks:
        calls = f"{check.api_calls} API call{'' if check.api_calls == 1 else 's'}"
        if check.ok:
            who = f", signed in as {check.identity}" if check.identity else ""
            lines.append(f"{check.source:<{width}}  OK      {check.host or 'reached'}{who} ({calls})")
        else:
            lines.append(f"{check.source:<{width}}  FAILED  {check.problem} ({calls})")
        if check.warning:
            lines.append(f"{'':<{width}}  warning: {check.warning}")
    return "\n".join(lines)
