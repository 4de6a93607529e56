"""The daemon's view of its jobs, kept in a small JSON file beside the store for `status`.

The store holds what was synced; this file holds what the running daemon plans (next run
of each job, back-off of a failing source). It is rewritten atomically after every job, so
`status` can read it at any time, whether or not a daemon runs.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class JobState:
    """One scheduled job: what it last did and when it runs next (ISO UTC or None)."""

    job: str
    next_run_at: str | None = None
    running: bool = False
    last_started_at: str | None = None
    last_finished_at: str | None = None
    last_result: str | None = None  # ok | failed | stopped | skipped
    last_error: str | None = None
    consecutive_failures: int = 0
    backoff_seconds: float = 0.0


@dataclass
class DaemonState:
    pid: int
    started_at: str
    updated_at: str
    stopped_at: str | None = None
    jobs: dict[str, JobState] = field(default_factory=dict)


def state_path_for(store_path: Path) -> Path:
    return Path(str(store_path) + ".daemon.json")


def write_state(path: Path, state: DaemonState) -> None:
    """Replace the file in one step, so a reader never sees half of it."""
    payload = json.dumps(asdict(state), indent=1, sort_keys=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_state(path: Path) -> DaemonState | None:
    """The last state a daemon wrote, or None when there is none (or it cannot be read)."""
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        jobs = {name: JobState(**job) for name, job in data.pop("jobs", {}).items()}
        return DaemonState(**data, jobs=jobs)
    except (OSError, ValueError, TypeError):
        return None
