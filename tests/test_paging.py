"""Each paginator of connectors.paging, once, on plain responses."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.base import MalformedResponse
from connectors.http import ApiResponse
from connectors.paging import (
    CursorExport,
    CursorList,
    LinkHeader,
    PageCapReached,
    PageNumber,
    StartingAfter,
    TimeExport,
)


def answer(data: Any = None, **headers: str) -> ApiResponse:
    return ApiResponse(200, headers, data if data is not None else {}, "/list")


def test_cursor_export_starts_from_a_time_then_follows_after_cursor_to_the_end() -> None:
    pager = CursorExport("x", {"per_page": 2}, start_time=100)
    assert pager.first_request() == {"per_page": 2, "start_time": 100}
    assert pager.next_request(answer({"after_cursor": "a", "end_of_stream": False})) == {"per_page": 2, "cursor": "a"}
    assert pager.next_request(answer({"after_cursor": "b", "end_of_stream": True})) is None
    assert pager.token == "b"  # the bookmark for the next poll
    resumed = CursorExport("x", {}, start_time=0, token="b")
    assert resumed.first_request() == {"cursor": "b"}
    with pytest.raises(MalformedResponse, match="same cursor"):
        resumed.next_request(answer({"after_cursor": "b", "end_of_stream": False}))
    with pytest.raises(MalformedResponse, match="end_of_stream"):
        resumed.next_request(answer({"after_cursor": "c"}))


def test_time_export_moves_to_end_time_and_steps_over_a_page_inside_one_second() -> None:
    pager = TimeExport("x", {"per_page": 2}, 100)
    assert pager.first_request() == {"per_page": 2, "start_time": 100}
    assert pager.next_request(answer({"end_time": 150, "end_of_stream": False})) == {"per_page": 2, "start_time": 150}
    assert pager.next_request(answer({"end_time": 150, "end_of_stream": False})) == {"per_page": 2, "start_time": 151}
    assert pager.next_request(answer({"end_time": 160, "end_of_stream": True})) is None
    assert pager.start == 160
    with pytest.raises(MalformedResponse, match="end_time"):
        pager.next_request(answer({"end_of_stream": True}))


def test_cursor_list_follows_meta_after_cursor_while_has_more() -> None:
    pager = CursorList("x", {"page[size]": 2})
    assert pager.first_request() == {"page[size]": 2}
    assert pager.next_request(answer({"meta": {"has_more": True, "after_cursor": "a"}})) == {
        "page[size]": 2, "page[after]": "a"}
    assert pager.next_request(answer({"meta": {"has_more": False}})) is None
    with pytest.raises(MalformedResponse, match="after_cursor"):
        pager.next_request(answer({"meta": {"has_more": True, "after_cursor": "a"}}))


def test_page_number_counts_up_until_the_last_page() -> None:
    pager = PageNumber({"per_page": 2})
    assert pager.first_request() == {"per_page": 2, "page": 1}
    assert pager.next_request(answer({"pages": {"total_pages": 2, "next": {"page": 2}}})) == {"per_page": 2, "page": 2}
    assert pager.next_request(answer({"pages": {"total_pages": 2, "next": None}})) is None
    assert PageNumber({}).next_request(answer({"pages": {"next": {"page": 2}}})) is None  # length unknown: stop


def test_link_header_takes_the_next_page_number_and_stops_at_the_cap() -> None:
    pager = LinkHeader("x", {"per_page": 2}, max_page=3)
    assert pager.first_request() == {"per_page": 2, "page": 1}
    link = '<https://h/api/v2/groups?per_page=2&page=2>; rel="next"'
    assert pager.next_request(answer([], Link=link)) == {"per_page": 2, "page": 2}
    assert pager.next_request(answer([])) is None
    with pytest.raises(PageCapReached):
        pager.next_request(answer([], Link='<https://h/x?page=4>; rel="next"'))
    with pytest.raises(MalformedResponse, match="no page number"):
        pager.next_page(answer([], Link='<https://h/x?cursor=z>; rel="next"'))


def test_starting_after_follows_tokens_and_ends_on_one_it_already_used() -> None:
    pager = StartingAfter("x", {"per_page": 2})
    assert pager.first_request() == {"per_page": 2}
    assert pager.next_request(answer({"pages": {"next": {"starting_after": "a"}}})) == {
        "per_page": 2, "starting_after": "a"}
    assert pager.token == "a"
    assert pager.next_request(answer({"pages": {"next": {"starting_after": "a"}}})) is None
    assert pager.repeated
    done = StartingAfter("x", {}, token="t")
    assert done.first_request() == {"starting_after": "t"}
    assert done.next_request(answer({"pages": {}})) is None and not done.repeated
    assert done.restart() == {}
    with pytest.raises(MalformedResponse, match="starting_after"):
        done.next_request(answer({"pages": {"next": {"page": 3}}}))
