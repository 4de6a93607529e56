"""`check-config --online` (issue 16, item 7): one cheap authenticated call per enabled source.

Through the real CLI against the sandbox: good credentials pass; a wrong token, a closed port
and a 403 each fail with exit 1 and a sentence naming the source and the host, never a secret.
The connectors' checks are then read directly for what only the module shows: Zendesk's
anonymous user, an agent's token, a wrong account name (404), a Freshdesk key whose agent
sees part of the tickets, and a plugin that offers no check.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connectors.intercom.connector import IntercomConnector
from connectors.sandbox import Sandbox
from connectors.sandbox.server import FakeRequest
from kpi_core.online_check import SourceCheck, all_ok, check_sources, format_checks
from kpi_core.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.sandbox(seed=7, tickets=12)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_KPI_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "kpi_core.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=ROOT, timeout=60)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def host(box: Sandbox, name: str) -> str:
    return box[name].base_url.split("://", 1)[1]


def secrets(box: Sandbox) -> list[str]:
    return [str(box[name].connector_settings()[key]) for name, key in
            (("zendesk", "api_token"), ("intercom", "access_token"), ("freshdesk", "api_key"))]


@pytest.fixture
def config(module_sandbox: Sandbox, tmp_path: Path) -> Callable[..., Path]:
    def write(extra: str = "") -> Path:
        path = tmp_path / "helpdesk-kpi.toml"
        path.write_text(module_sandbox.config_toml(str(tmp_path / "store.sqlite")) + "\n" + extra)
        os.chmod(path, 0o600)
        return path

    return write


# --- through the CLI ---------------------------------------------------------------------------------------


def test_good_credentials_pass_with_one_call_each(module_sandbox: Sandbox, config: Callable[..., Path]) -> None:
    for fake in module_sandbox.fakes.values():
        fake.clear_log()
    result = run_cli("check-config", "--online", "--config", str(config()))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for name in ("zendesk", "intercom", "freshdesk"):
        line = next(line for line in result.stdout.splitlines() if line.startswith(name))
        assert "OK" in line and host(module_sandbox, name) in line, line
        assert len(module_sandbox[name].calls()) == 1  # one cheap call, nothing synced
    assert "signed in as admin admin@sandbox.example" in result.stdout
    assert not [s for s in secrets(module_sandbox) if s in output] and "Traceback" not in output


def test_a_wrong_token_is_named_as_rejected_and_exits_1(module_sandbox: Sandbox, config: Callable[..., Path]) -> None:
    wrong = "zd-wrong-token-never-printed"
    result = run_cli("check-config", "--online", "--config", str(config()),
                     env={"HELPDESK_KPI_CONNECTORS__ZENDESK__API_TOKEN": wrong})
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    line = next(line for line in output.splitlines() if line.startswith("zendesk"))
    assert f"{host(module_sandbox, 'zendesk')} rejected the credentials (401)" in line
    assert "check email ('admin@sandbox.example') and api_token" in line
    assert [line for line in output.splitlines() if line.startswith(("intercom", "freshdesk")) and "OK" in line]
    assert wrong not in output and "Traceback" not in output
    assert not [s for s in secrets(module_sandbox) if s in output]


def test_an_unreachable_host_is_named_and_exits_1(config: Callable[..., Path]) -> None:
    port = closed_port()
    result = run_cli("check-config", "--online", "--config", str(config()),
                     env={"HELPDESK_KPI_CONNECTORS__FRESHDESK__BASE_URL": f"http://127.0.0.1:{port}"})
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    line = next(line for line in result.stdout.splitlines() if line.startswith("freshdesk"))
    assert f"cannot reach 127.0.0.1:{port} (connection refused" in line, line
    assert "ConnectionError" not in output and "Traceback" not in output


def test_a_missing_permission_or_plan_is_named_and_exits_1(module_sandbox: Sandbox,
                                                            config: Callable[..., Path]) -> None:
    module_sandbox["intercom"].fail(403, path="^/me$")
    result = run_cli("check-config", "--online", "--config", str(config()))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    line = next(line for line in result.stdout.splitlines() if line.startswith("intercom"))
    assert f"{host(module_sandbox, 'intercom')} refused access (403: Active subscription needed.)" in line
    assert "plan has no API access" in line


# --- the checks themselves -----------------------------------------------------------------------------------


def checks(path: Path) -> dict[str, SourceCheck]:
    return {c.source: c for c in check_sources(load_settings(path))}


def test_zendesk_anonymous_user_and_agent_tokens_fail(module_sandbox: Sandbox, config: Callable[..., Path]) -> None:
    fake = module_sandbox["zendesk"]
    # Zendesk answers 200 with its anonymous user where it signs nobody in (the fake does so without credentials).
    anonymous = fake.dispatch(FakeRequest("GET", "/api/v2/users/me.json", {}, {}, None))[0].body
    assert anonymous["user"]["id"] is None
    fake.fail(200, path="/users/me", body=anonymous)
    found = checks(config())["zendesk"]
    assert not found.ok and "answered as the anonymous user" in (found.problem or "")
    fake.fail(200, path="/users/me", body={"user": {"id": 7, "name": "A", "role": "agent", "email": "a@x.example"}})
    found = checks(config())["zendesk"]
    assert not found.ok and "act as agent a@x.example, not an admin" in (found.problem or "")


def test_a_wrong_account_name_is_a_404_naming_the_key(module_sandbox: Sandbox, config: Callable[..., Path]) -> None:
    module_sandbox["freshdesk"].fail(404, path="/agents/me")
    found = checks(config())["freshdesk"]
    assert not found.ok and found.problem == f"{host(module_sandbox, 'freshdesk')} knows no such account (404):" \
                                             " check base_url"


def test_a_freshdesk_agent_with_partial_ticket_scope_is_warned(module_sandbox: Sandbox,
                                                               config: Callable[..., Path]) -> None:
    fake: Any = module_sandbox["freshdesk"]
    agent = fake.render_agent(min(fake.data.agents(), key=lambda p: p.id))
    fake.fail(200, path="/agents/me", body={**agent, "ticket_scope": 2})
    result = check_sources(load_settings(config()))
    found = {c.source: c for c in result}["freshdesk"]
    assert found.ok and all_ok(result)
    assert "sees only their groups' tickets" in (found.warning or "")
    assert "warning: the key's agent sees only" in format_checks(result)


def test_a_plugin_without_a_check_is_reported_untested(module_sandbox: Sandbox, config: Callable[..., Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(IntercomConnector, "check")
    found = checks(config())["intercom"]
    assert found.ok and found.api_calls == 0 and "no online check" in (found.warning or "")


def test_format_and_all_ok() -> None:
    good = SourceCheck("zendesk", "acme.zendesk.com", True, None, 1, "admin a@acme.example")
    bad = SourceCheck("freshdesk", "acme.freshdesk.com", False, "acme.freshdesk.com rejected the credentials (401):"
                      " check api_key", 1)
    assert all_ok([good]) and not all_ok([good, bad]) and all_ok([])
    assert format_checks([good, bad]).splitlines() == [
        "zendesk    OK      acme.zendesk.com, signed in as admin a@acme.example (1 API call)",
        "freshdesk  FAILED  acme.freshdesk.com rejected the credentials (401): check api_key (1 API call)",
    ]
    assert format_checks([]) == "no source is enabled: nothing to check online"
