"""`helpdesk-kpi alerts`: what is at risk of missing its target now, and the alerts sent."""

from __future__ import annotations

import argparse
from typing import Any


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """No sub-commands yet."""
