"""Conditional headers: which verdict each combination gives a read and a write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.domain.clock import http_date
from controller.domain.conditions import Verdict, parse_conditions
from controller.errors import BadRequest

ETAG = "0x8DE2A1B2C3D4E5F"
MODIFIED = datetime(2026, 11, 22, 8, 0, 0, 250_000, tzinfo=UTC)
BEFORE, AFTER = http_date(MODIFIED - timedelta(seconds=1)), http_date(MODIFIED + timedelta(seconds=1))


def _verdicts(headers: dict[str, str]) -> tuple[Verdict, Verdict]:
    """The verdict for a read, then for a write, of the entity with ETAG last modified at MODIFIED."""
    conditions = parse_conditions(headers)
    return conditions.evaluate(ETAG, MODIFIED, reading=True), conditions.evaluate(ETAG, MODIFIED, reading=False)


PROCEED, NOT_MODIFIED, FAILED = Verdict.PROCEED, Verdict.NOT_MODIFIED, Verdict.FAILED


@pytest.mark.parametrize(
    ("headers", "read", "write"),
    [
        ({}, PROCEED, PROCEED),
        ({"if-match": ETAG}, PROCEED, PROCEED),
        ({"if-match": f'"{ETAG}"'}, PROCEED, PROCEED),
        ({"if-match": "*"}, PROCEED, PROCEED),
        ({"if-match": "0x1"}, FAILED, FAILED),
        ({"if-match": f"0x1, {ETAG}"}, PROCEED, PROCEED),
        ({"if-none-match": ETAG}, NOT_MODIFIED, FAILED),
        ({"if-none-match": "*"}, NOT_MODIFIED, FAILED),
        ({"if-none-match": "0x1"}, PROCEED, PROCEED),
        ({"if-modified-since": BEFORE}, PROCEED, PROCEED),
        ({"if-modified-since": http_date(MODIFIED)}, NOT_MODIFIED, FAILED),
        ({"if-modified-since": AFTER}, NOT_MODIFIED, FAILED),
        ({"if-unmodified-since": BEFORE}, FAILED, FAILED),
        ({"if-unmodified-since": http_date(MODIFIED)}, PROCEED, PROCEED),
        ({"if-match": ETAG, "if-unmodified-since": BEFORE}, PROCEED, PROCEED),
        ({"if-none-match": "0x1", "if-modified-since": AFTER}, PROCEED, PROCEED),
    ],
)
def test_verdicts(headers: dict[str, str], read: Verdict, write: Verdict) -> None:
    assert _verdicts(headers) == (read, write)


def test_a_write_compares_and_sets_on_a_single_if_match_etag_only() -> None:
    assert parse_conditions({"if-match": f'"{ETAG}"'}).expected_etag == ETAG
    assert parse_conditions({"if-match": "*"}).expected_etag is None
    assert parse_conditions({"if-match": f"0x1, {ETAG}"}).expected_etag is None
    assert not parse_conditions({}).given and parse_conditions({"if-none-match": "*"}).given


def test_a_malformed_date_is_a_400_naming_the_header() -> None:
    with pytest.raises(BadRequest) as error:
        parse_conditions({"if-modified-since": "yesterday"})
    assert (error.value.code, error.value.values["HeaderName"]) == ("InvalidHeaderValue", "if-modified-since")
