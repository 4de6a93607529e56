"""Documentation is tested like code: every command has help text and a place in the README."""

from __future__ import annotations

import argparse
from pathlib import Path

from kpi_core import cli

ROOT = Path(__file__).resolve().parent.parent


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = _subcommands()
    assert {"check-config", "sync", "status", "sandbox", "demo"} <= set(commands)
    for name in commands:
        assert cli.COMMANDS[name].__doc__, f"{name} has no help text"
        assert f"helpdesk-kpi {name}" in readme, f"README.md does not document `helpdesk-kpi {name}`"


def test_readme_leads_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme.index("make demo") < readme.index("make test") < readme.index("## Connect")


def test_every_kpi_id_is_in_the_readme_and_the_definitions_page() -> None:
    from kpi_core.kpis.catalogue import CATALOGUE_IDS

    readme = (ROOT / "README.md").read_text()
    definitions = (ROOT / "docs" / "kpi-definitions.md").read_text()
    for kpi_id in CATALOGUE_IDS:
        assert f"`{kpi_id}`" in readme, kpi_id
        assert kpi_id in definitions, kpi_id
