"""Conditional requests: `If-Match`, `If-None-Match`, `If-Modified-Since` and `If-Unmodified-Since`.

Evaluated as RFC 9110 orders them: `If-Match`, else `If-Unmodified-Since`; then
`If-None-Match`, else `If-Modified-Since`. A read whose entity did not change
answers 304; every other condition that does not hold answers 412
`ConditionNotMet`, as Azure Batch does. Pure functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from controller.domain.clock import parse_http_date
from controller.errors import BadRequest


class Verdict(Enum):
    """What a request's conditions mean for it."""

    PROCEED = "proceed"
    NOT_MODIFIED = "not modified"
    FAILED = "failed"


@dataclass(frozen=True)
class Conditions:
    """The conditions one request carries; each absent one is None."""

    if_match: frozenset[str] | None = None
    if_none_match: frozenset[str] | None = None
    if_modified_since: datetime | None = None
    if_unmodified_since: datetime | None = None

    @property
    def given(self) -> bool:
        """Whether the request carries any condition."""
        return self != Conditions()

    @property
    def expected_etag(self) -> str | None:
        """The one ETag an `If-Match` names, for a write to compare and set on; None for none, several or `*`."""
        if self.if_match is None or len(self.if_match) != 1 or "*" in self.if_match:
            return None
        return next(iter(self.if_match))

    def evaluate(self, etag: str, modified: datetime, reading: bool) -> Verdict:
        """The verdict for an entity with `etag`, last modified at `modified` (seconds are compared, as headers
        carry no less)."""
        modified = modified.replace(microsecond=0)
        if self.if_match is not None and not _matches(self.if_match, etag):
            return Verdict.FAILED
        if self.if_match is None and self.if_unmodified_since is not None and modified > self.if_unmodified_since:
            return Verdict.FAILED
        unchanged = (self.if_none_match is not None and _matches(self.if_none_match, etag)) or (
            self.if_none_match is None and self.if_modified_since is not None and modified <= self.if_modified_since
        )
        if not unchanged:
            return Verdict.PROCEED
        return Verdict.NOT_MODIFIED if reading else Verdict.FAILED


def parse_conditions(headers: Mapping[str, str]) -> Conditions:
    """The conditions among request headers (names lowercase); 400 InvalidHeaderValue for a malformed date."""
    return Conditions(
        if_match=_etags(headers.get("if-match")),
        if_none_match=_etags(headers.get("if-none-match")),
        if_modified_since=_date(headers, "if-modified-since"),
        if_unmodified_since=_date(headers, "if-unmodified-since"),
    )


def _matches(wanted: frozenset[str], etag: str) -> bool:
    return "*" in wanted or _bare(etag) in wanted


def _bare(etag: str) -> str:
    """An ETag without a weak prefix or quotes: clients send back what they read, quoted or not."""
    text = etag.strip()
    if text.startswith("W/"):
        text = text[2:]
    return text.strip('"')


def _etags(value: str | None) -> frozenset[str] | None:
    if value is None or not value.strip():
        return None
    return frozenset(_bare(item) for item in value.split(",") if item.strip())


def _date(headers: Mapping[str, str], name: str) -> datetime | None:
    value = headers.get(name)
    if value is None or not value.strip():
        return None
    parsed = parse_http_date(value)
    if parsed is None:
        raise BadRequest(
            f"The value for one of the HTTP headers is not in the correct format: {name}",
            code="InvalidHeaderValue",
            values={"HeaderName": name, "HeaderValue": value},
        )
    return parsed
