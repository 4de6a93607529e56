"""A seeded, generated helpdesk world that the fake APIs render in their vendors' shapes.

The world is vendor-neutral: people, groups, organizations and tickets with their
messages, status changes and ratings, in the catalogue's vocabulary. Each fake
(`connectors/sandbox/zendesk.py`, ...) serves the slice of its source in its vendor's
JSON. Tests compute expected KPI values from the same world, independently of the
connectors and the store.

Times are epoch seconds (ints). Every change stamps the ticket with `world.tick()`, a
clock that never repeats a second, so incremental exports see each change exactly once.

Two later passes draw from random streams of their own, so that adding them moved no
ticket, message, status change or rating the main stream makes: the tickets' group,
priority and assignee history (`Ticket.changes`, ending at the values the ticket shows) and
the words of the messages (customers write in their locale's language, agents mostly answer
in it; see `connectors/sandbox/phrases.py`).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from connectors.sandbox.phrases import PhraseBook

Source = Literal["zendesk", "intercom", "freshdesk"]
SOURCES: tuple[Source, ...] = ("zendesk", "intercom", "freshdesk")

# Share of the tickets each source gets.
SOURCE_WEIGHTS: dict[str, float] = {"zendesk": 0.5, "intercom": 0.25, "freshdesk": 0.25}

# Channels each vendor can express (catalogue vocabulary), with their weights.
CHANNELS: dict[str, dict[str, float]] = {
    "zendesk": {"email": 30, "web_form": 15, "chat": 20, "messaging": 10, "phone": 8, "social": 7, "api": 7,
                "other": 3},
    "intercom": {"chat": 55, "email": 20, "messaging": 12, "phone": 5, "social": 8},
    "freshdesk": {"email": 45, "web_form": 20, "phone": 12, "chat": 15, "social": 5, "other": 3},
}

LOCALES: list[tuple[str | None, str | None, float]] = [
    # (locale, country, weight)
    ("en-US", "US", 30), ("en-GB", "GB", 10), ("de-DE", "DE", 12), ("fr-FR", "FR", 10),
    ("es-ES", "ES", 8), ("pt-BR", "BR", 8), ("ja", "JP", 5), ("nl-NL", "NL", 5),
    ("it", "IT", 4), ("zh-CN", "CN", 3), (None, None, 5),
]

FIRST_NAMES = ["Ana", "Ben", "Chloé", "Dmitri", "Eva", "Farah", "Goro", "Hana", "Iker", "Jonas", "Kim", "Lena",
               "Mateo", "Noor", "Olga", "Pedro", "Quinn", "Rosa", "Sven", "Tomás", "Ugo", "Vera", "Wen", "Yuki"]
LAST_NAMES = ["Silva", "Müller", "Dubois", "García", "Rossi", "Tanaka", "Jansen", "Kowalski", "Okafor", "Nguyen",
              "Larsen", "Haddad", "Costa", "Schmidt", "Moreau", "Sato", "Bakker", "Ivanova"]
TAGS = ["billing", "refund", "shipping", "login", "bug", "feature_request", "returns", "vip", "invoice",
        "delivery_delay"]
TYPES = ["question", "incident", "problem", "task", None]
PRIORITIES = ["low", "normal", "normal", "normal", "high", "urgent"]
SKUS = ["SKU-100", "SKU-200", "SKU-300", "SKU-400", None]

# Median first-reply delay in seconds by channel, for a realistic spread.
REPLY_DELAY = {"chat": 90, "messaging": 150, "phone": 25, "email": 5 * 3600, "web_form": 6 * 3600,
               "social": 2 * 3600, "api": 8 * 3600, "other": 10 * 3600}
LIVE = {"chat", "messaging", "phone"}

StatusName = Literal["new", "open", "pending", "on_hold", "resolved", "closed"]
ChangeField = Literal["group", "priority", "assignee"]
# Ids of field changes: a space of their own, far above the world's ids, so that drawing the changes after
# everything else moves no id the world hands out (`next_id`) and no fake's derived id.
CHANGE_ID_BASE = 5 * 10**11
RAISED_PRIORITIES = ("high", "urgent")


@dataclass(slots=True)
class Person:
    id: int
    role: Literal["customer", "agent", "bot"]
    name: str
    email: str
    phone: str | None
    locale: str | None
    country: str | None
    organization_id: int | None
    time_zone: str = "UTC"
    created_at: int = 0
    updated_at: int = 0
    custom: dict[str, Any] = field(default_factory=dict)  # custom field values written through the API


@dataclass
class Group:
    id: int
    name: str
    created_at: int = 0


@dataclass
class Organization:
    id: int
    name: str
    country: str | None
    tags: list[str]
    created_at: int = 0
    updated_at: int = 0
    custom: dict[str, Any] = field(default_factory=dict)  # custom field values written through the API


@dataclass(slots=True)
class Message:
    id: int
    author_id: int
    role: Literal["customer", "agent", "bot", "system"]
    public: bool
    created_at: int
    body: str


@dataclass(slots=True)
class StatusChange:
    at: int
    status: StatusName
    previous: StatusName | None
    id: int = 0


@dataclass(slots=True)
class FieldChange:
    """A ticket's group, priority or assignee set to `value` at `at`; `previous` None for a first assignment.

    Groups and assignees are world ids, priorities the neutral names (low, normal, high, urgent).
    """

    at: int
    field: ChangeField
    value: int | str
    previous: int | str | None
    id: int


@dataclass(slots=True)
class Rating:
    """A satisfaction survey: offered at `offered_at`, answered at `answered_at` (or never)."""

    id: int
    score: int | None  # native scale: 1 good / 0 bad (zendesk), 1..5 (intercom), -103..103 (freshdesk)
    offered_at: int
    answered_at: int | None
    comment: str | None
    updated_at: int = 0


@dataclass(slots=True)
class Ticket:
    id: int
    source: str
    channel: str
    subject: str
    created_at: int
    updated_at: int
    requester_id: int
    assignee_id: int | None
    group_id: int | None
    organization_id: int | None
    priority: str
    type: str | None
    tags: list[str]
    sku: str | None
    outbound: bool
    messages: list[Message] = field(default_factory=list)
    status_changes: list[StatusChange] = field(default_factory=list)
    rating: Rating | None = None
    deleted: bool = False
    spam: bool = False
    handle_seconds: int | None = None  # time logged by agents (Freshdesk time entries, Intercom handling)
    deleted_at: int | None = None
    custom: dict[str, Any] = field(default_factory=dict)  # custom field values written through the API
    changes: list[FieldChange] = field(default_factory=list)  # group, priority and assignee history, in time order

    @property
    def status(self) -> StatusName:
        return self.status_changes[-1].status if self.status_changes else "new"

    @property
    def resolved_times(self) -> list[int]:
        return [c.at for c in self.status_changes
                if c.status in ("resolved", "closed") and c.previous not in ("resolved", "closed")]

    @property
    def reopen_times(self) -> list[int]:
        return [c.at for c in self.status_changes
                if c.previous in ("resolved",) and c.status not in ("resolved", "closed")]

    def initial(self, name: ChangeField) -> int | str | None:
        """The group, priority or assignee the ticket had when it was created (None: no assignee yet)."""
        for change in self.changes:
            if change.field == name:
                return change.previous
        return {"group": self.group_id, "priority": self.priority, "assignee": self.assignee_id}[name]

    def moves(self) -> list[FieldChange]:
        """The changes from one value to another (first assignments left out)."""
        return [c for c in self.changes if c.previous is not None]


@dataclass(slots=True)
class Refund:
    at: int
    amount: float


@dataclass(slots=True)
class Order:
    """A shop order of a helpdesk customer (the Shopify fake serves them; the customer's e-mail is the key)."""

    id: int
    customer_source: str  # the helpdesk whose customer placed it
    customer_id: int
    created_at: int
    updated_at: int
    currency: str
    total: float
    lines: list[tuple[str, int]]  # (sku, quantity)
    refunds: list[Refund] = field(default_factory=list)
    cancelled_at: int | None = None


@dataclass
class CustomField:
    """A custom field an admin defined in one helpdesk (for write-back); `type` in neutral words."""

    id: int
    object: str  # ticket | person | organization
    key: str  # what a write names: Zendesk user/org field key, Intercom attribute name, Freshdesk cf_ name
    title: str
    type: str  # text | integer | decimal | checkbox | date | dropdown
    options: tuple[str, ...] = ()


@dataclass
class SourceData:
    """One helpdesk's slice of the world."""

    name: str
    people: dict[int, Person] = field(default_factory=dict)
    groups: dict[int, Group] = field(default_factory=dict)
    organizations: dict[int, Organization] = field(default_factory=dict)
    tickets: dict[int, Ticket] = field(default_factory=dict)

    def agents(self) -> list[Person]:
        return [p for p in self.people.values() if p.role == "agent"]

    def customers(self) -> list[Person]:
        return [p for p in self.people.values() if p.role == "customer"]

    def bots(self) -> list[Person]:
        return [p for p in self.people.values() if p.role == "bot"]


class World:
    """The generated dataset of all three sources, safe to read while another thread mutates it."""

    def __init__(self, seed: int = 7, tickets: int = 600, days: int = 120, now: int | None = None) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.lock = threading.RLock()
        self.now = int(time.time()) if now is None else now
        self.start = self.now - days * 86400
        self._last_stamp = 0
        self._next_id = 1000
        self.sources: dict[str, SourceData] = {s: SourceData(s) for s in SOURCES}
        self.custom_fields: dict[str, list[CustomField]] = {s: [] for s in SOURCES}
        for source in SOURCES:
            self._populate(self.sources[source], max(1, round(tickets * SOURCE_WEIGHTS[source])))
        self.orders: dict[int, Order] = {}
        self._populate_orders(random.Random(seed * 7919 + 1))  # its own stream: the tickets stay as they were
        self._next_change_id = CHANGE_ID_BASE
        self._populate_changes(random.Random(seed * 7919 + 2))  # its own stream, as the orders'
        self._populate_words(random.Random(seed * 7919 + 3))  # and the messages' words

    # --- clock and ids ----------------------------------------------------------------

    def tick(self) -> int:
        """A fresh change time: now, but never the same second twice."""
        with self.lock:
            self._last_stamp = max(int(time.time()), self._last_stamp + 1)
            return self._last_stamp

    def next_id(self) -> int:
        with self.lock:
            self._next_id += 1
            return self._next_id

    def clock(self) -> int:
        """The world's present: wall-clock now, or the latest change stamp when tick() ran ahead."""
        return max(int(time.time()), self._last_stamp)

    @property
    def version(self) -> tuple[int, int]:
        """Changes whenever the world does (every change takes a tick or a fresh id): a cache key for fakes."""
        return (self._last_stamp, self._next_id)

    # --- generation -------------------------------------------------------------------

    def _populate(self, data: SourceData, n_tickets: int) -> None:
        rng = self.rng
        for i in range(4):
            gid = self.next_id()
            data.groups[gid] = Group(gid, ["Tier 1", "Tier 2", "Billing", "Returns"][i], self.start)
        for _ in range(max(3, n_tickets // 40)):
            oid = self.next_id()
            locale, country = _pick_locale(rng)
            data.organizations[oid] = Organization(oid, f"Org {oid} {rng.choice(LAST_NAMES)} Ltd", country,
                                                   rng.sample(["enterprise", "smb", "partner"], 1),
                                                   self.start, self.start)
        for _ in range(max(4, n_tickets // 60)):
            pid = self.next_id()
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            data.people[pid] = Person(pid, "agent", f"{first} {last}", f"agent{pid}@support.example.com",
                                      f"+1555{pid:07d}", rng.choice(["en-US", "de-DE", "fr-FR", "es-ES"]), None, None,
                                      created_at=self.start, updated_at=self.start)
        bid = self.next_id()
        data.people[bid] = Person(bid, "bot", "Answer Bot", f"bot{bid}@support.example.com", None, "en-US", None, None,
                                  created_at=self.start, updated_at=self.start)
        org_ids = list(data.organizations)
        customers: list[int] = []
        for _ in range(max(5, int(n_tickets * 0.7))):
            pid = self.next_id()
            locale, country = _pick_locale(rng)
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            data.people[pid] = Person(pid, "customer", f"{first} {last}", f"{first.lower()}.{pid}@customer.example.org",
                                      f"+4915{pid:08d}" if rng.random() < 0.4 else None, locale, country,
                                      rng.choice(org_ids) if rng.random() < 0.5 else None,
                                      created_at=self.start, updated_at=self.start)
            customers.append(pid)
        agents, bot = data.agents(), data.bots()[0]
        # Created in time order, so that ids grow with creation time as a helpdesk's do (random ids
        # would make every insert of a first sync land on a random page of the store's indexes).
        arrivals = sorted((rng.randint(self.start, self.now - 3600), rng.choice(customers)) for _ in range(n_tickets))
        for created, requester_id in arrivals:
            self._new_ticket(data, rng, requester_id, created, agents, bot)

    def _new_ticket(self, data: SourceData, rng: random.Random, requester_id: int, created: int,
                    agents: list[Person], bot: Person) -> Ticket:
        requester = data.people[requester_id]
        channel = _weighted(rng, CHANNELS[data.name])
        outbound = rng.random() < 0.05
        tid = self.next_id()
        ticket = Ticket(
            id=tid, source=data.name, channel=channel, subject=f"Order question {tid}", created_at=created,
            updated_at=created, requester_id=requester_id, assignee_id=None,
            group_id=rng.choice(tuple(data.groups)), organization_id=requester.organization_id,
            priority=rng.choice(PRIORITIES), type=rng.choice(TYPES),
            tags=rng.sample(TAGS, rng.randint(0, 3)), sku=rng.choice(SKUS), outbound=outbound,
        )
        data.tickets[tid] = ticket
        self._status(ticket, created, "new")
        t = created
        agent = rng.choice(agents)
        if outbound:
            self._message(ticket, agent.id, "agent", True, t, "We noticed your order is delayed.")
            ticket.assignee_id = agent.id
            self._status(ticket, t, "pending")
            if rng.random() < 0.6:
                t += rng.randint(600, 86400)
                self._message(ticket, requester_id, "customer", True, t, "Thanks, when will it arrive?")
                self._status(ticket, t, "open")
        else:
            self._message(ticket, requester_id, "customer", True, t, f"Hello, I have a problem with order {tid}.")
        if rng.random() < 0.15:
            t += rng.randint(1, 5)
            self._message(ticket, bot.id, "system", True, t, "We received your request.")
        bot_only = channel in LIVE and not outbound and rng.random() < 0.12
        if bot_only or (channel in LIVE and rng.random() < 0.1):
            t += rng.randint(5, 30)
            self._message(ticket, bot.id, "bot", True, t, "Here is an article that may help.")
            if bot_only:
                t += rng.randint(30, 600)
                self._status(ticket, t, "resolved")
                ticket.updated_at = t
                self._maybe_close(ticket, rng)
                return ticket
        if rng.random() < 0.06:  # never answered (yet)
            ticket.updated_at = t
            if channel in LIVE and rng.random() < 0.5:
                t += rng.randint(1800, 7200)
                self._status(ticket, t, "resolved")  # the customer gave up; an agent closed it unanswered
                ticket.updated_at = t
            return ticket
        ticket.assignee_id = agent.id
        self._status(ticket, t + 1, "open")
        delay = int(rng.lognormvariate(0, 0.9) * REPLY_DELAY[channel])
        t += max(5, delay)
        if rng.random() < 0.2:
            self._message(ticket, agent.id, "agent", False, t - 2, "Internal: checking with the warehouse.")
        self._message(ticket, agent.id, "agent", True, t, "Thanks for reaching out, let me check.")
        extra_rounds = rng.choices([0, 1, 2, 3], weights=[55, 25, 12, 8])[0]
        for _ in range(extra_rounds):
            t += rng.randint(300, 20000)
            self._message(ticket, requester_id, "customer", True, t, "Any update?")
            t += rng.randint(60, 20000)
            self._message(ticket, agent.id, "agent", True, t, "Here is an update on your order.")
        if rng.random() < 0.85:
            t += rng.randint(60, 7200)
            self._status(ticket, t, "resolved")
            if rng.random() < 0.1:  # reopened by the customer, then solved again
                t += rng.randint(3600, 3 * 86400)
                self._message(ticket, requester_id, "customer", True, t, "It happened again.")
                self._status(ticket, t, "open")
                t += rng.randint(300, 30000)
                self._message(ticket, agent.id, "agent", True, t, "Fixed it for good this time.")
                t += rng.randint(60, 3600)
                self._status(ticket, t, "resolved")
            if rng.random() < 0.35:
                answered = t + rng.randint(600, 2 * 86400) if rng.random() < 0.7 else None
                positive = rng.random() < 0.85
                ticket.rating = Rating(self.next_id(), _native_score(data.name, positive, rng) if answered else None,
                                       t + 60, answered,
                                       "Great help, thanks!" if answered and rng.random() < 0.3 else None)
                t = max(t, answered or t + 60)
            self._maybe_close(ticket, rng)
        elif rng.random() < 0.5:
            t += rng.randint(60, 3600)
            self._status(ticket, t, "pending")
        if data.name in ("freshdesk", "intercom") and ticket.resolved_times:
            ticket.handle_seconds = rng.randint(120, 5400)
        ticket.updated_at = max(t, ticket.updated_at)
        # Into the past first, so nothing of the ticket (a rating's answer included) lies ahead of
        # the world's present, whatever happens to the ticket next.
        if ticket.updated_at > self.now - 120:
            self._shift_into_past(ticket, ticket.updated_at - (self.now - 120))
        if rng.random() < 0.02:
            ticket.deleted = True
            ticket.deleted_at = ticket.updated_at = min(self.now - 120, ticket.updated_at + 3600)
        elif data.name == "freshdesk" and rng.random() < 0.01:
            ticket.spam = True
        return ticket

    def _maybe_close(self, ticket: Ticket, rng: random.Random) -> None:
        last = ticket.status_changes[-1].at
        if ticket.source == "zendesk" and last + 4 * 86400 < self.now - 3600 and rng.random() < 0.8:
            self._status(ticket, last + 4 * 86400, "closed")
        elif ticket.source == "freshdesk" and last + 2 * 86400 < self.now - 3600 and rng.random() < 0.5:
            self._status(ticket, last + 2 * 86400, "closed")

    def _shift_into_past(self, ticket: Ticket, seconds: int) -> None:
        ticket.created_at -= seconds
        ticket.updated_at -= seconds
        for m in ticket.messages:
            m.created_at -= seconds
        for c in ticket.status_changes:
            c.at -= seconds
        if ticket.rating:
            ticket.rating.offered_at -= seconds
            if ticket.rating.answered_at:
                ticket.rating.answered_at -= seconds
        if ticket.deleted_at:
            ticket.deleted_at -= seconds

    def _message(self, ticket: Ticket, author_id: int, role: str, public: bool, at: int, body: str) -> None:
        ticket.messages.append(Message(self.next_id(), author_id, role, public, at, body))  # type: ignore[arg-type]
        ticket.updated_at = max(ticket.updated_at, at)

    def _status(self, ticket: Ticket, at: int, status: StatusName) -> None:
        previous = ticket.status_changes[-1].status if ticket.status_changes else None
        if previous == status:
            return
        ticket.status_changes.append(StatusChange(at, status, previous, self.next_id()))
        ticket.updated_at = max(ticket.updated_at, at)

    # --- changes after generation (incremental sync tests, the soak) -------------------

    def mutate(self, source: str, count: int, rng: random.Random | None = None) -> list[int]:
        """Change `count` tickets of `source` as a live helpdesk would; returns their ids."""
        rng = rng or self.rng
        with self.lock:
            data = self.sources[source]
            candidates = [t for t in data.tickets.values() if not t.deleted and t.status != "closed"]
            chosen = rng.sample(candidates, min(count, len(candidates)))
            for ticket in chosen:
                self._change(data, ticket, rng)
            return [t.id for t in chosen]

    def _change(self, data: SourceData, ticket: Ticket, rng: random.Random) -> None:
        at = self.tick()
        agent = data.people.get(ticket.assignee_id or 0) or rng.choice(data.agents())
        if ticket.status == "resolved":
            if ticket.rating is None or ticket.rating.answered_at is None:
                positive = rng.random() < 0.8
                ticket.rating = Rating(ticket.rating.id if ticket.rating else self.next_id(),
                                       _native_score(data.name, positive, rng),
                                       ticket.rating.offered_at if ticket.rating else at, at, None)
                ticket.rating.updated_at = at
            else:
                self._message(ticket, ticket.requester_id, "customer", True, at, "Sorry, still broken.")
                self._status(ticket, at, "open")
        elif not any(m.role == "agent" and m.public for m in ticket.messages):
            if ticket.assignee_id is None:
                self._record_change(ticket, at, "assignee", agent.id, None)
            ticket.assignee_id = agent.id
            self._message(ticket, agent.id, "agent", True, at, "Sorry for the wait, looking now.")
            self._status(ticket, at, "open")
        else:
            self._message(ticket, agent.id, "agent", True, at, "This is now fixed.")
            self._status(ticket, at, "resolved")
        ticket.updated_at = at

    def add_tickets(self, source: str, count: int, rng: random.Random | None = None) -> list[int]:
        """Open `count` new tickets now (a live helpdesk's new arrivals)."""
        rng = rng or self.rng
        with self.lock:
            data = self.sources[source]
            customers = [p.id for p in data.customers()]
            ids = []
            for _ in range(count):
                at = self.tick()
                ticket = Ticket(id=self.next_id(), source=source, channel=_weighted(rng, CHANNELS[source]),
                                subject="New question", created_at=at, updated_at=at,
                                requester_id=rng.choice(customers), assignee_id=None,
                                group_id=rng.choice(tuple(data.groups)), organization_id=None, priority="normal",
                                type="question", tags=[], sku=None, outbound=False)
                self._status(ticket, at, "new")
                self._message(ticket, ticket.requester_id, "customer", True, at, "Hi, a new question.")
                data.tickets[ticket.id] = ticket
                ids.append(ticket.id)
            return ids

    def define_field(self, source: str, object: str, key: str, type: str, title: str = "",
                     options: tuple[str, ...] = ()) -> CustomField:
        """Define a custom field, as an admin does in the helpdesk's settings (or its API); no key: its id."""
        with self.lock:
            ident = self.next_id()
            defined = CustomField(ident, object, key or str(ident), title or key, type, tuple(options))
            self.custom_fields[source].append(defined)
            return defined

    def fields_of(self, source: str, object: str) -> list[CustomField]:
        return [f for f in self.custom_fields[source] if f.object == object]

    def add_note(self, source: str, ticket_id: int, author_id: int, body: str, public: bool = False) -> Message:
        """A comment posted through the API now (a private note unless `public`); the ticket changes."""
        with self.lock:
            ticket = self.sources[source].tickets[ticket_id]
            at = self.tick()
            message = Message(self.next_id(), author_id, "agent", public, at, body)
            ticket.messages.append(message)
            ticket.updated_at = at
            return message

    def delete_ticket(self, source: str, ticket_id: int) -> None:
        with self.lock:
            ticket = self.sources[source].tickets[ticket_id]
            ticket.deleted = True
            ticket.deleted_at = ticket.updated_at = self.tick()

    # --- group, priority and assignee history ---------------------------------------------

    def _record_change(self, ticket: Ticket, at: int, name: ChangeField, value: int | str,
                       previous: int | str | None) -> None:
        with self.lock:
            self._next_change_id += 1
            ticket.changes.append(FieldChange(at, name, value, previous, self._next_change_id))
            ticket.changes.sort(key=lambda c: (c.at, c.id))

    def _populate_changes(self, rng: random.Random) -> None:
        """Each ticket's first assignment, and on a share of the answered tickets the escalations a
        helpdesk shows: a move out of the first tier after the first reply, a raise to high or urgent
        priority after it, a reassignment before it. Every history ends at the values the ticket shows."""
        for data in self.sources.values():
            tier_one = next(iter(data.groups))
            agents = [p.id for p in data.agents()]
            for ticket in data.tickets.values():
                if ticket.deleted or ticket.assignee_id is None:
                    continue
                self._draw_changes(ticket, rng, tier_one, agents)

    def _draw_changes(self, ticket: Ticket, rng: random.Random, tier_one: int, agents: list[int]) -> None:
        opened = next((c.at for c in ticket.status_changes if c.previous == "new" and c.status == "open"), None)
        assigned_at = ticket.created_at if ticket.outbound or opened is None else opened
        first_reply = next((m.created_at for m in ticket.messages
                            if m.role == "agent" and m.public and m.created_at > assigned_at), None)
        resolved = ticket.resolved_times
        # Moves happen while the ticket is being worked: before it is first resolved (and never after its last change).
        until = min(resolved[0] if resolved else ticket.updated_at, ticket.updated_at)
        first_assignee: int = ticket.assignee_id  # type: ignore[assignment]
        others = [a for a in agents if a != ticket.assignee_id]
        if first_reply is not None and others and first_reply - assigned_at >= 2 and rng.random() < 0.08:
            first_assignee = rng.choice(others)
            self._record_change(ticket, rng.randint(assigned_at + 1, first_reply - 1), "assignee",
                                ticket.assignee_id, first_assignee)  # type: ignore[arg-type]
        self._record_change(ticket, assigned_at, "assignee", first_assignee, None)
        if first_reply is None or until - first_reply < 2:
            return
        if ticket.group_id is not None and ticket.group_id != tier_one and rng.random() < 0.12:
            self._record_change(ticket, rng.randint(first_reply + 1, until - 1), "group", ticket.group_id, tier_one)
        if ticket.priority in RAISED_PRIORITIES and rng.random() < 0.3:
            self._record_change(ticket, rng.randint(first_reply + 1, until - 1), "priority", ticket.priority,
                                rng.choice(("low", "normal", "normal")))

    # --- the words of the messages -------------------------------------------------------------

    def _populate_words(self, rng: random.Random) -> None:
        """Customers write in their locale's language, in a mood drawn per ticket; agents answer in the
        customer's language four times in five, else in English. Bots' and triggers' texts stay as made."""
        book = PhraseBook()
        for data in self.sources.values():
            for ticket in data.tickets.values():
                requester = data.people[ticket.requester_id]
                book.write(ticket.messages, requester.locale, rng)

    # --- orders (the shop's side of the same customers) ---------------------------------

    def _populate_orders(self, rng: random.Random) -> None:
        """Orders for about two thirds of the customers: some before their first contact, some after,
        a few cancelled, some refunded (the value KPIs' raw material)."""
        shop_start = self.start - 60 * 86400
        for source, data in self.sources.items():
            first_contact: dict[int, int] = {}
            for t in data.tickets.values():
                first_contact[t.requester_id] = min(first_contact.get(t.requester_id, t.created_at), t.created_at)
            for person in data.customers():
                if rng.random() < 0.35:
                    continue
                contact = first_contact.get(person.id)
                for _ in range(rng.choice([1, 1, 2, 2, 3, 4])):
                    if contact is not None and rng.random() < 0.6:  # soon after a contact: a converted consultation
                        created = min(self.now - 600, contact + rng.randint(600, 20 * 86400))
                    else:
                        created = rng.randint(shop_start, self.now - 600)
                    self._new_order(source, person.id, created, rng)

    def _new_order(self, source: str, customer_id: int, created: int, rng: random.Random,
                   plain: bool = False) -> Order:
        oid = self.next_id()
        lines = [(rng.choice(["SKU-100", "SKU-200", "SKU-300", "SKU-400"]), rng.randint(1, 3))
                 for _ in range(rng.randint(1, 3))]
        total = round(sum(q * {"SKU-100": 19.9, "SKU-200": 49.0, "SKU-300": 89.5, "SKU-400": 129.0}[s]
                          for s, q in lines), 2)
        order = Order(oid, source, customer_id, created, created, "EUR", total, lines)
        roll = 1.0 if plain else rng.random()
        if roll < 0.06:
            order.cancelled_at = order.updated_at = min(self.now - 1, created + rng.randint(300, 86400))
        elif roll < 0.18:
            at = min(self.now - 1, created + rng.randint(86400, 14 * 86400))
            order.refunds.append(Refund(at, round(total * rng.choice([0.25, 0.5, 1.0]), 2)))
            order.updated_at = at
        self.orders[oid] = order
        return order

    def change_orders(self, count: int, rng: random.Random | None = None) -> list[int]:
        """Refund `count` orders and add `count` new ones, stamped now: what an incremental sync must pick up."""
        rng = rng or random.Random(self.seed + 17)
        with self.lock:
            changed = []
            open_orders = [o for o in self.orders.values() if not o.refunds and o.cancelled_at is None]
            for order in rng.sample(open_orders, min(count, len(open_orders))):
                order.updated_at = self.tick()
                order.refunds.append(Refund(order.updated_at, round(order.total / 2, 2)))
                changed.append(order.id)
            for _ in range(count):
                source = rng.choice(list(self.sources))
                customer = rng.choice(self.sources[source].customers())
                order = self._new_order(source, customer.id, self.tick(), rng, plain=True)
                changed.append(order.id)
            return changed

    def customer(self, order: Order) -> Person:
        return self.sources[order.customer_source].people[order.customer_id]

    # --- reading ------------------------------------------------------------------------

    def tickets(self, source: str) -> Iterator[Ticket]:
        return iter(list(self.sources[source].tickets.values()))

    def personal_strings(self) -> set[str]:
        """Every name, e-mail address, phone number, message body and comment in the world."""
        out: set[str] = set()
        for data in self.sources.values():
            for p in data.people.values():
                out.update(v for v in (p.name, p.email, p.phone) if v)
            for t in data.tickets.values():
                out.update(m.body for m in t.messages)
                if t.rating and t.rating.comment:
                    out.add(t.rating.comment)
        return out


def _pick_locale(rng: random.Random) -> tuple[str | None, str | None]:
    choice = rng.choices(LOCALES, weights=[w for _, _, w in LOCALES])[0]
    return choice[0], choice[1]


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _native_score(source: str, positive: bool, rng: random.Random) -> int:
    if source == "zendesk":
        return 1 if positive else 0
    if source == "intercom":
        return rng.choice([4, 5]) if positive else rng.choice([1, 2, 3])
    return rng.choice([101, 102, 103]) if positive else rng.choice([100, -101, -102, -103])
