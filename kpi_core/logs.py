"""Logging to stderr, as plain text or JSON lines, with the source and job on every line."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

_context = threading.local()


@contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Attach fields such as source="zendesk", job="sync" to every log line inside the block."""
    previous = dict(getattr(_context, "fields", {}))
    _context.fields = {**previous, **fields}
    try:
        yield
    finally:
        _context.fields = previous


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        fields = getattr(_context, "fields", {})
        record.source = fields.get("source", "-")
        record.job = fields.get("job", "-")
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname.lower(),
            "source": getattr(record, "source", "-"),
            "job": getattr(record, "job", "-"),
            "logger": record.name,
            "message": record.getMessage(),
        }
        return json.dumps(entry)


TEXT_FORMAT = "%(asctime)s %(levelname)s [%(source)s/%(job)s] %(name)s: %(message)s"


def configure_logging(verbose: bool = False, fmt: str = "text", level: str = "warning") -> None:
    """Route the program's logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else getattr(logging, level.upper(), logging.WARNING))
    logging.getLogger("urllib3").setLevel(logging.WARNING)
