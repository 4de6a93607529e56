"""Paginators: "what is the next request, is there one" for each paging style the APIs use.

A stream picks one and drives it the same way every time:

    query = pager.first_request()
    while query is not None:
        response = client.get(path, query)
        ...normalize response.data into a page...
        query = pager.next_request(response)
        ...the pager's position (token, time) goes into the page's bookmark; yield the page...

Each class keeps only its own style's state (the last token, the next start time, the page
number) and raises `MalformedResponse` when a response breaks the style's promise (no flag,
the same cursor twice), since following such an answer would loop or skip records. None of
them sends a request: the connector keeps its client, so which calls are made stays in view.

Styles: `CursorExport` (Zendesk's incremental cursor export), `TimeExport` (Zendesk's
time-based export), `CursorList` (Zendesk's cursor-paginated lists), `PageNumber` (page=N
until the body says last, Intercom's company list), `LinkHeader` (page=N taken from
`Link: <...>; rel="next"`, Freshdesk) and `StartingAfter` (Intercom's search).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import requests

from connectors.base import MalformedResponse, SyncError
from connectors.http import ApiResponse

Params = dict[str, Any]


class Paginator(Protocol):
    def first_request(self) -> Params: ...

    def next_request(self, response: ApiResponse) -> Params | None:
        """The parameters of the next request after `response`; None when it was the last page."""
        ...


class PageCapReached(SyncError):
    """A list goes on past the last page number the API serves."""


def _body(source: str, response: ApiResponse) -> Mapping[str, Any]:
    if not isinstance(response.data, dict):
        raise MalformedResponse(
            f"{source}: GET {response.path}: expected a JSON object, got {type(response.data).__name__}")
    return response.data


def _flag(source: str, response: ApiResponse, key: str) -> bool:
    value = _body(source, response).get(key)
    if not isinstance(value, bool):
        raise MalformedResponse(f"{source}: GET {response.path}: {key} is missing or not a boolean")
    return value


class CursorExport:
    """`start_time` once, then `cursor=<after_cursor>` until `end_of_stream` (Zendesk's cursor export).

    `token` is the last `after_cursor` received, which is also the bookmark: the export hands
    one out on its last page too, and the next poll continues from it.
    """

    def __init__(self, source: str, params: Mapping[str, Any], *, start_time: int, token: str | None = None) -> None:
        self.source = source
        self.params = dict(params)
        self.start_time = start_time
        self.token = token
        self._sent: str | None = None  # the cursor of the last request made

    def first_request(self) -> Params:
        self._sent = self.token
        if self.token:
            return {**self.params, "cursor": self.token}
        return {**self.params, "start_time": self.start_time}

    def next_request(self, response: ApiResponse) -> Params | None:
        after = _body(self.source, response).get("after_cursor")
        self.token = after if isinstance(after, str) and after else None
        if _flag(self.source, response, "end_of_stream") or self.token is None:
            return None
        if self.token == self._sent:
            raise MalformedResponse(f"{self.source}: GET {response.path}: the export returned the same cursor twice")
        self._sent = self.token
        return {**self.params, "cursor": self.token}


class TimeExport:
    """Each page's `end_time` is the next `start_time`, until `end_of_stream` (Zendesk's time-based export).

    `start` is the next page's start time, the bookmark after each page. A page lying wholly
    inside one second (end_time == start_time) steps to the next second: that second was
    delivered whole, and asking for it again would return the same page forever.
    """

    def __init__(self, source: str, params: Mapping[str, Any], start: int) -> None:
        self.source = source
        self.params = dict(params)
        self.start = start

    def first_request(self) -> Params:
        return {**self.params, "start_time": self.start}

    def next_request(self, response: ApiResponse) -> Params | None:
        end_time = _body(self.source, response).get("end_time")
        if not isinstance(end_time, int) or isinstance(end_time, bool):
            raise MalformedResponse(f"{self.source}: GET {response.path}: end_time is missing or not an epoch")
        end_of_stream = _flag(self.source, response, "end_of_stream")
        following = max(end_time, self.start)
        if following == self.start and not end_of_stream:
            following = self.start + 1
        self.start = following
        return None if end_of_stream else {**self.params, "start_time": following}


class CursorList:
    """`page[after]=<meta.after_cursor>` while `meta.has_more` (Zendesk's cursor-paginated lists)."""

    def __init__(self, source: str, params: Mapping[str, Any]) -> None:
        self.source = source
        self.params = dict(params)

    def first_request(self) -> Params:
        return dict(self.params)

    def next_request(self, response: ApiResponse) -> Params | None:
        meta = _body(self.source, response).get("meta")
        if not isinstance(meta, dict) or not meta.get("has_more"):
            return None
        after = meta.get("after_cursor")
        if not isinstance(after, str) or not after or after == self.params.get("page[after]"):
            raise MalformedResponse(f"{self.source}: GET {response.path}: has_more without a new after_cursor")
        self.params = {**self.params, "page[after]": after}
        return dict(self.params)


class PageNumber:
    """page=1, 2, ... until the body's `pages` says the last was reached (`total_pages`, `next`).

    A body that does not give `total_pages` ends the list at the current page: asking past the
    end of an unknown length would cost calls for empty pages.
    """

    def __init__(self, params: Mapping[str, Any], *, start: int = 1) -> None:
        self.params = dict(params)
        self.number = start

    def first_request(self) -> Params:
        return {**self.params, "page": self.number}

    def next_request(self, response: ApiResponse) -> Params | None:
        pages = response.data.get("pages") if isinstance(response.data, dict) else None
        pages = pages if isinstance(pages, dict) else {}
        total = pages.get("total_pages")
        total = total if isinstance(total, int) and not isinstance(total, bool) else self.number
        if self.number >= total or not pages.get("next"):
            return None
        self.number += 1
        return {**self.params, "page": self.number}


class LinkHeader:
    """page=N, with N taken from the `Link: <...?page=N>; rel="next"` header, absent on the last page.

    `max_page` is the last page number the API serves (Freshdesk: 300); a next page beyond it
    raises `PageCapReached` rather than asking for a page that cannot be listed.
    """

    def __init__(self, source: str, params: Mapping[str, Any], *, max_page: int | None = None) -> None:
        self.source = source
        self.params = dict(params)
        self.max_page = max_page
        self.number = 1

    def first_request(self) -> Params:
        return {**self.params, "page": self.number}

    def next_page(self, response: ApiResponse) -> int | None:
        """The page number the header names as next; None on the last page."""
        header = response.headers.get("Link")
        if not header:
            return None
        for link in requests.utils.parse_header_links(header):
            if link.get("rel") == "next":
                values = parse_qs(urlsplit(link.get("url", "")).query).get("page")
                if not values or not values[0].isdigit():
                    raise MalformedResponse(f"{self.source}: GET {response.path}: the Link header names no page number")
                return int(values[0])
        return None

    def next_request(self, response: ApiResponse) -> Params | None:
        following = self.next_page(response)
        if following is None:
            return None
        if self.max_page is not None and following > self.max_page:
            raise PageCapReached(
                f"{self.source}: GET {response.path}: more than {self.max_page} pages; the API cannot list further")
        self.number = following
        return {**self.params, "page": following}


class StartingAfter:
    """`starting_after=<pages.next.starting_after>` until `pages.next` is absent (Intercom's search).

    `token` is the token of the next page (the bookmark of a pass in progress). A token the
    pass has already used (the API can hand one back while data changes) ends the pass, with
    `repeated` set, instead of looping over the same pages.
    """

    def __init__(self, source: str, params: Mapping[str, Any], *, token: str | None = None) -> None:
        self.source = source
        self.params = dict(params)
        self.token = token
        self.repeated = False
        self._used: set[str] = {token} if token else set()

    def first_request(self) -> Params:
        return {**self.params, "starting_after": self.token} if self.token else dict(self.params)

    def restart(self) -> Params:
        """The first page again, without the token (a stored token the API no longer accepts)."""
        self.token = None
        return dict(self.params)

    def next_request(self, response: ApiResponse) -> Params | None:
        pages = _body(self.source, response).get("pages")
        nxt = pages.get("next") if isinstance(pages, dict) else None
        if not nxt:
            self.token = None
            return None
        token = nxt.get("starting_after") if isinstance(nxt, dict) else None
        if not isinstance(token, str) or not token:
            raise MalformedResponse(f"{self.source}: {response.path}: pages.next has no starting_after")
        if token in self._used:
            self.token, self.repeated = None, True
            return None
        self._used.add(token)
        self.token = token
        return {**self.params, "starting_after": token}
