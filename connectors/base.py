"""The connector contract: declared streams plus a reader that yields pages with cursors.

A connector knows its vendor's API and the normalized vocabulary of `kpi_core.model`, and
nothing else: not the store, the KPIs or the scheduler. `kpi_core.sync` drives it, storing
each page together with the cursor that follows it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol

from kpi_core.model import RECORD_TYPES, check_record, email_hash


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


class Unreachable(SyncError):
    """No answer at all: the host name does not resolve, the connection is refused or times out."""

    def __init__(self, message: str, host: str) -> None:
        super().__init__(message)
        self.host = host  # host[:port], as the URL names it


class MalformedResponse(SyncError):
    """A response whose body is not the JSON the endpoint documents (e.g. a truncated page)."""


def scrub(value: Any, personal_keys: frozenset[str]) -> Any:
    """A copy of a payload without the personal fields (names, addresses, bodies, comments).

    Each connector lists its vendor's personal keys explicitly; the raw JSON kept for
    re-normalization goes through this before it reaches a record.
    """
    if isinstance(value, dict):
        # Scalars are copied without a call: this runs over every record of every page.
        return {k: scrub(v, personal_keys) if type(v) in _NESTED else v
                for k, v in value.items() if k not in personal_keys}
    if isinstance(value, list):
        return [scrub(v, personal_keys) if type(v) in _NESTED else v for v in value]
    return value


_NESTED = (dict, list)


@dataclass(frozen=True)
class PersonalKeys:
    """One vendor's personal keys, grouped by the `[privacy]` switch that may keep them.

    `always` holds what no switch keeps (postal addresses, social handles, envelopes that
    mix names with addresses). Keys match at any depth of a payload (see `scrub`).
    """

    names: frozenset[str]
    emails: frozenset[str]
    phones: frozenset[str]
    bodies: frozenset[str]  # what anyone wrote: message bodies, subjects, descriptions
    comments: frozenset[str]  # free text of survey answers
    always: frozenset[str]

    def every(self) -> frozenset[str]:
        return self.names | self.emails | self.phones | self.bodies | self.comments | self.always


class PrivacyChoices(Protocol):
    """The `[privacy]` switches a connector reads (kpi_core.settings.PrivacySettings)."""

    store_names: bool
    store_emails: bool
    store_phones: bool
    store_message_bodies: bool
    store_survey_comments: bool
    # Agents' and bots' display names (the account's own staff); customers' names follow store_names.
    store_agent_names: bool

    def hash_key_bytes(self) -> bytes | None: ...

    # Message bodies are read into memory (conversation insight analyses them during the sync), whether or not
    # they are stored: the sync keeps only what is derived from them unless store_message_bodies is on too.
    @property
    def read_message_bodies(self) -> bool: ...


@dataclass(frozen=True)
class Privacy:
    """What one connector keeps of personal data: the keys scrubbed from raw JSON, the columns it fills.

    `agent_names`: agents' and bots' display names go into `people.name` (`staff`), a switch of
    its own because agents are the account's staff, not its customers. It fills the column
    only: the raw JSON keeps no name unless `names` is on too.
    """

    drop: frozenset[str]
    names: bool = False
    emails: bool = False
    phones: bool = False
    bodies: bool = False
    comments: bool = False
    hash_key: bytes | None = field(default=None, repr=False)
    agent_names: bool = False
    read_bodies: bool = False  # bodies travel in memory for conversation insight (stored only with `bodies`)

    @classmethod
    def choose(cls, keys: PersonalKeys, choices: PrivacyChoices | None = None) -> Privacy:
        """The scrub list and columns for `choices` (None: the defaults, which keep nothing personal)."""
        if choices is None:
            return cls(keys.every())
        kept: frozenset[str] = frozenset()
        for on, group in ((choices.store_names, keys.names), (choices.store_emails, keys.emails),
                          (choices.store_phones, keys.phones), (choices.store_message_bodies, keys.bodies),
                          (choices.store_survey_comments, keys.comments)):
            if on:
                kept |= group
        return cls(keys.every() - kept, names=choices.store_names, emails=choices.store_emails,
                   phones=choices.store_phones, bodies=choices.store_message_bodies,
                   comments=choices.store_survey_comments, hash_key=choices.hash_key_bytes(),
                   agent_names=choices.store_agent_names, read_bodies=choices.read_message_bodies)

    def raw(self, payload: Any) -> Any:
        return scrub(payload, self.drop)

    def person(self, name: Any, email: Any, phone: Any) -> dict[str, str | None]:
        """people.name/email/phone as the switches allow (None otherwise), and the e-mail's keyed hash."""
        address = email.strip() if isinstance(email, str) and email.strip() else None
        return {
            "name": name if self.names and isinstance(name, str) else None,
            "email": address if self.emails else None,
            "phone": phone if self.phones and isinstance(phone, str) else None,
            "email_hash": email_hash(address, self.hash_key) if address and self.hash_key else None,
        }

    def staff(self, name: Any, email: Any, phone: Any) -> dict[str, str | None]:
        """`person` for an agent or bot: their display name is kept when `agent_names` is on as well."""
        row = self.person(name, email, phone)
        if self.agent_names and isinstance(name, str) and name.strip():
            row["name"] = name.strip()
        return row

    def body(self, text: Any) -> str | None:
        return text if (self.bodies or self.read_bodies) and isinstance(text, str) else None

    def comment(self, text: Any) -> str | None:
        return text if self.comments and isinstance(text, str) and text else None


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
    # What the admin should know although the read went on (a directory the token may not
    # read, a vendor's listing limit): shown by `sync`, kept in the run log, shown by `status`.
    warnings: list[str] = field(default_factory=list)

    def add(self, table: str, row: dict[str, Any]) -> None:
        """Add a normalized row; raises RecordError (naming the record and key) if it does not fit."""
        check_record(RECORD_TYPES[table], row)
        self.add_checked(table, row)

    def add_checked(self, table: str, row: dict[str, Any]) -> None:
        """Add a row `check_record` has accepted (per record of every page: no list is built to be thrown away)."""
        rows = self.records.get(table)
        if rows is None:
            rows = self.records[table] = []
        rows.append(row)

    def reject(self, record_id: str, reason: str) -> None:
        """Set a record aside for quarantine instead of failing the page."""
        self.rejected.append((record_id, reason))

    def warn(self, message: str) -> None:
        """Note something the admin should see; the sync goes on."""
        self.warnings.append(message)

    def size(self) -> int:
        return sum(len(rows) for rows in self.records.values())


@dataclass(frozen=True)
class WriteRequest:
    """One planned write into the helpdesk (filled in by the write-back planner)."""

    object: str  # ticket | conversation | user | contact | organization | company
    record_id: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    note: str | None = None
    # The record's other key where an endpoint addresses it by that (Intercom's company_id).
    external_id: str | None = None


@dataclass
class CallCounts:
    """What a connector's HTTP client met so far: part of the contract, so the daemon's metrics need no digging."""

    calls: int = 0
    throttled: int = 0  # 429 answers
    server_errors: int = 0
    retries: int = 0
    slowdowns: int = 0  # pauses taken because few calls remained


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

    @property
    def call_counts(self) -> CallCounts:
        """Calls, 429 answers, retries ... made so far by this connector's HTTP client."""
        ...

    def close(self) -> None:
        """Release the HTTP session."""
        ...


class Reconcilable(Protocol):
    """Optional: a connector that can re-read a look-back window (the daemon's nightly reconciliation).

    `rewind_cursor(stream, cursor, since)` returns a cursor, in the connector's own format,
    from which `read(stream, that_cursor)` yields every record changed at or after `since`
    (a UTC datetime), then carries on to the end of the stream as usual. It must never be
    later than `cursor` (when the stored bookmark is already older than `since`, return
    `cursor` itself), and returns None for a stream that cannot be re-read from a time.
    Pages read from the rewound cursor are upserted, so records read twice are not duplicated.
    """

    def rewind_cursor(self, stream: StreamSpec, cursor: str | None, since: datetime) -> str | None:
        ...


@dataclass
class BackfillStart:
    """What a connector found when it looked where a stream's first sync begins (`Backfillable.backfill_start`).

    `first` is the first page of the oldest-first read (the read a first sync makes today),
    kept so that the look costs nothing: `position` is where that read goes on after it.
    `oldest` is the change time of its first record (None: the stream has nothing to read);
    `complete` says the page held the whole stream.
    """

    first: Page
    position: str | None
    oldest: datetime | None
    complete: bool


class Backfillable(Protocol):
    """Optional: a connector whose first sync can fill a stream newest first, window by window.

    - `backfill_start(stream)` reads the first page of the oldest-first read of `stream` (see
      `BackfillStart`); None when the stream has no bounded time window (it syncs oldest-first).
    - `head_cursor(stream, since)`: a cursor from which `read(stream, cursor)` yields every
      change at or after `since` and then carries on as usual (the newest window, read as
      the stream's incremental read).
    - `read_window(stream, start, end, position)`: pages holding every change in
      [`start`, `end`) (a page may run past `end`; the read stops once changes pass it). Each
      page's `cursor` is the position, in the connector's own format, from which the same
      call resumes the window; `position` None starts at `start`. `position` may also be the
      `BackfillStart.position` of the oldest window.
    - `spawn()`: another connector on the same settings with its own HTTP session, pacing its
      calls with this one's (one rate budget per account), to read windows in other threads;
      `readers(wanted)` bounds how many and `prefer_this_thread` lets the sync's own reads go
      first (`connectors.http.ClientOwner` provides both).

    Records read twice are upserted, so windows that overlap lose or duplicate nothing.
    """

    def backfill_start(self, stream: StreamSpec) -> BackfillStart | None:
        ...

    def head_cursor(self, stream: StreamSpec, since: datetime) -> str:
        ...

    def read_window(self, stream: StreamSpec, start: datetime, end: datetime, position: str | None) -> Iterator[Page]:
        ...

    def spawn(self) -> BackfillReader:
        ...

    def readers(self, wanted: int) -> int:
        """How many threads may read windows at once: `wanted`, fewer when the rate-limit headers say so."""
        ...

    def prefer_this_thread(self, on: bool) -> None:
        """While on, this thread's calls (the sync's incremental reads) go before the window readers'."""
        ...


class BackfillReader(Protocol):
    """What a spawned connector offers the threads that read windows."""

    def read_window(self, stream: StreamSpec, start: datetime, end: datetime, position: str | None) -> Iterator[Page]:
        ...

    @property
    def call_counts(self) -> CallCounts:
        ...

    def close(self) -> None:
        ...


@dataclass(frozen=True)
class CheckResult:
    """What one cheap authenticated call told about a connector's settings (`Checkable.check`).

    `problem` is one sentence an admin can act on (a rejected token, a missing permission or
    plan, an unreachable host, a wrong account name), None when the credentials work.
    `identity` says whom the credentials act as; `warning` what works but limits the KPIs.
    Neither ever holds a secret.
    """

    host: str  # host[:port] the connector talks to
    problem: str | None = None
    identity: str | None = None
    warning: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


class Checkable(Protocol):
    """Optional: a connector that can test its settings online (`check-config --online`).

    `check()` makes one cheap authenticated call (the vendor's "who am I" endpoint) and
    reports what it found; it never raises for what the API answers, and never syncs.
    """

    def check(self) -> CheckResult:
        ...


# --- write-back: the optional half of a connector that writes into the helpdesk ----------------

# Field types in neutral words; each writer maps its vendor's type names onto these.
FIELD_TYPES = ("text", "integer", "number", "checkbox", "dropdown", "date", "other")


@dataclass(frozen=True)
class FieldDef:
    """A custom field (or attribute) as the helpdesk defines it."""

    object: str
    key: str  # what a write names, as a string (Zendesk ticket fields: the numeric id)
    type: str  # one of FIELD_TYPES
    vendor_type: str  # the helpdesk's own type name
    title: str = ""
    options: tuple[str, ...] = ()  # allowed values of a dropdown
    writable: bool = True  # False for system fields and attributes the API may not set


@dataclass(frozen=True)
class FieldSpec:
    """A custom field to create: the key the mappings use, a title and the neutral type."""

    object: str
    key: str
    title: str
    type: str  # text | integer | number | checkbox


@dataclass(frozen=True)
class WriteResult:
    """What became of one write request (one record, or one note)."""

    request: WriteRequest
    ok: bool
    error: str | None = None
    # False when a failed request may have been carried out all the same (a note whose POST
    # timed out): such a request is not sent again automatically, to avoid a duplicate note.
    certain: bool = True


class FieldNotCreatable(SyncError):
    """The API cannot create this kind of field; the message says what the admin must create by hand."""


class Writer(Protocol):
    """Writes values into one helpdesk: custom fields by bulk or per record, and private notes.

    Each call of `write` or `add_note` is exactly one write request to the API (plus, for a
    bulk job, the polls of its status), so a caller can budget requests. A record the API
    refuses comes back as a failed `WriteResult`; errors that concern every record (bad
    credentials, the helpdesk unreachable) are raised as `SyncError`s.
    """

    name: ClassVar[str]
    objects: ClassVar[tuple[str, ...]]  # the objects it can write, e.g. ("ticket", "user", "organization")

    def field_definitions(self, object: str) -> list[FieldDef]:
        """Every field the helpdesk defines on `object` (custom and system)."""
        ...

    def create_field(self, spec: FieldSpec) -> FieldDef:
        """Create a custom field; raises FieldNotCreatable where the API cannot."""
        ...

    def batch_size(self, object: str) -> int:
        """How many records one `write` call carries for `object` (1 where no bulk endpoint exists)."""
        ...

    def write(self, object: str, requests: Sequence[WriteRequest]) -> list[WriteResult]:
        """Set custom field values on up to `batch_size(object)` records in one request."""
        ...

    def add_note(self, request: WriteRequest) -> WriteResult:
        """Add `request.note` as a private, internal note on the contact `request.record_id`."""
        ...

    @property
    def api_calls(self) -> int:
        """Calls made so far (writes, polls and reads)."""
        ...

    def close(self) -> None:
        ...
