"""OData `$filter`, `$select` and `maxresults` parsing."""

from __future__ import annotations

import pytest

from controller.api.odata import parse_filter, parse_options, project
from controller.errors import BadRequest
from controller.services.records import page_of

TASKS = [
    {"id": "a1", "state": "completed", "executionInfo": {"exitCode": 0, "result": "success"}},
    {"id": "a2", "state": "completed", "executionInfo": {"exitCode": 3, "result": "failure"}},
    {"id": "b1", "state": "active", "executionInfo": {}},
]


def _ids(expression: str) -> list[str]:
    predicate = parse_filter(expression)
    return [task["id"] for task in TASKS if predicate(task)]


def test_comparisons_and_precedence() -> None:
    assert _ids("state eq 'completed' and executionInfo/exitCode ne 0") == ["a2"]
    assert _ids("state eq 'active' or executionInfo/exitCode eq 0") == ["a1", "b1"]
    assert _ids("not (state eq 'active')") == ["a1", "a2"]


def test_startswith_and_case_insensitive_strings() -> None:
    assert _ids("startswith(id, 'A')") == ["a1", "a2"]
    assert _ids("executionInfo/result eq 'FAILURE'") == ["a2"]


def test_malformed_filter_is_a_400() -> None:
    with pytest.raises(BadRequest) as caught:
        parse_filter("state equals 'x'")
    assert caught.value.code == "InvalidQueryParameterValue"


def test_maxresults_bounds() -> None:
    assert parse_options({"maxresults": "10"}).max_results == 10
    with pytest.raises(BadRequest) as caught:
        parse_options({"maxresults": "1001"})
    assert caught.value.code == "OutOfRangeQueryParameterValue"


def test_select_projects_top_level_properties() -> None:
    options = parse_options({"$select": "id,state"})
    assert project(TASKS[0], options.select) == {"id": "a1", "state": "completed"}


def _pages(query: dict[str, str]) -> list[list[str]]:
    """Every page of TASKS listed with `query`, following skip tokens."""
    pages, token = [], ""
    while True:
        page = page_of(TASKS, parse_options({**query, "$skiptoken": token}))
        pages.append([item["id"] for item in page.items])
        if not page.next_token:
            return pages
        token = page.next_token


def test_a_list_in_memory_pages_after_its_filter() -> None:
    assert _pages({"maxresults": "2"}) == [["a1", "a2"], ["b1"]]
    assert _pages({"maxresults": "1", "$filter": "state eq 'completed'"}) == [["a1"], ["a2"], []]
    assert _pages({"$filter": "state eq 'active'", "$select": "id"}) == [["b1"]]
    assert page_of(TASKS, parse_options({"$select": "id"})).items[0] == {"id": "a1"}
