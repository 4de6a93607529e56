"""`helpdesk-kpi digest` (the review digests) and `helpdesk-kpi events` (the event log)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """No sub-commands yet."""
