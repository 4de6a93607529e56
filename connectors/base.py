"""The connector contract: declared streams plus a reader that yields pages with cursors.

A connector knows its vendor's API and the normalized vocabulary of `kpi_core.model`, and
nothing else: not the store, the KPIs or the scheduler. `kpi_core.sync` drives it, storing
each page together with the cursor that follows it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from kpi_core.model import RECORD_TYPES, check_record


class SyncError(Exception):
    """Anything the daemon reports to an operator about one source."""


class ConfigError(SyncError):
    """The settings of a connector cannot work (missing token, bad base URL)."""


class FatalApiError(SyncError):
    """A 4xx other than 429 (bad token, missing permission, bad request): not retried."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthError(FatalApiError):
    """401: the token or key was rejected."""


class PermissionDenied(FatalApiError):
    """403: the credentials lack a permission or the plan lacks a feature."""


class RetryableApiError(SyncError):
    """429 or 5xx: retried with backoff; seen by callers only when retries run out."""

    def __init__(self, message: str, status: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class MalformedResponse(SyncError):
    """A response whose body is not the JSON the endpoint documents (e.g. a truncated page)."""


def scrub(value: Any, personal_keys: frozenset[str]) -> Any:
    """A copy of a payload without the personal fields (names, addresses, bodies, comments).

    Each connector lists its vendor's personal keys explicitly; the raw JSON kept for
    re-normalization goes through this before it reaches a record.
    """
    if isinstance(value, dict):
        return {k: scrub(v, personal_keys) for k, v in value.items() if k not in personal_keys}
    if isinstance(value, list):
        return [scrub(v, personal_keys) for v in value]
    return value


@dataclass(frozen=True)
class StreamSpec:
    """One incremental stream of a connector: its name and the tables its pages fill."""

    name: str
    tables: tuple[str, ...]
    description: str = ""


@dataclass
class Page:
    """Normalized records, by table, and the resume point after them.

    `cursor` None means "do not move the bookmark for this page" (a page of a pass whose
    bookmark can only be promoted at its end).
    """

    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    cursor: str | None = None
    # Records the connector could not normalize: (record id, reason). Stored in quarantine.
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def add(self, table: str, row: dict[str, Any]) -> None:
        """Add a normalized row; raises RecordError (naming the record and key) if it does not fit."""
        check_record(RECORD_TYPES[table], row)
        self.records.setdefault(table, []).append(row)

    def reject(self, record_id: str, reason: str) -> None:
        """Set a record aside for quarantine instead of failing the page."""
        self.rejected.append((record_id, reason))

    def size(self) -> int:
        return sum(len(rows) for rows in self.records.values())


@dataclass(frozen=True)
class WriteRequest:
    """One planned write into the helpdesk (filled in by the write-back planner)."""

    object: str  # ticket | conversation | user | contact | organization | company
    record_id: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    note: str | None = None


class Connector(Protocol):
    """What every helpdesk connector provides."""

    name: ClassVar[str]

    def streams(self) -> Sequence[StreamSpec]:
        """The streams in the order they must be synced."""
        ...

    def read(self, stream: StreamSpec, cursor: str | None, full: bool = False) -> Iterator[Page]:
        """Yield pages changed since `cursor` (None: from the configured start date)."""
        ...

    @property
    def api_calls(self) -> int:
        """Calls made so far by this connector's HTTP client."""
        ...

    def close(self) -> None:
        """Release the HTTP session."""
        ...
