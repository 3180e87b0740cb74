"""Durations and timestamps in Azure's wire forms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.domain.clock import UNLIMITED_DURATION, deadline_ms, format_duration, new_etag, parse_duration


def test_parse_common_durations() -> None:
    assert parse_duration("PT1H30M") == timedelta(hours=1, minutes=30)
    assert parse_duration("P7D") == timedelta(days=7)
    assert parse_duration("PT0.5S") == timedelta(seconds=0.5)
    assert parse_duration("1 hour") is None
    assert parse_duration("P") is None


def test_format_round_trips_and_unlimited() -> None:
    assert format_duration(timedelta(minutes=15)) == "PT15M"
    assert parse_duration(format_duration(timedelta(days=2, seconds=3))) == timedelta(days=2, seconds=3)
    assert format_duration(timedelta.max) == UNLIMITED_DURATION


def test_etags_look_like_the_service_and_change() -> None:
    first = new_etag()
    second = new_etag()
    assert first.startswith("0x8D")
    assert int(second, 16) >= int(first, 16)


def test_a_deadline_is_start_plus_limit_and_none_when_unlimited() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert deadline_ms(start, "PT1M") == start.timestamp() * 1000 + 60_000
    # The unlimited value the service shows, sent back as is, and no limit at all, set no deadline
    assert deadline_ms(start, UNLIMITED_DURATION) is None
    assert deadline_ms(start, None) is None
