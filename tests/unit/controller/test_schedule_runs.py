"""When a job schedule whose timing changed creates its next job."""

from __future__ import annotations

from datetime import timedelta

from controller.services.jobschedules import first_due, next_run_after_change, window_missed

NOW = 1_800_000_000_000
"""2027-01-15T08:00:00Z in epoch milliseconds."""
MARCH = "2027-03-01T00:00:00Z"
MARCH_MS = "1803859200000"
MINUTE = 60_000
LAST = NOW - 10 * MINUTE


def test_a_schedule_that_never_ran_runs_at_its_start_or_now() -> None:
    assert next_run_after_change({}, None, NOW) == str(NOW)
    assert next_run_after_change({"doNotRunUntil": "2020-01-01T00:00:00Z"}, None, NOW) == str(NOW)
    assert next_run_after_change({"doNotRunUntil": MARCH, "recurrenceInterval": "PT1H"}, None, NOW) == MARCH_MS


def test_one_that_ran_recurs_an_interval_after_its_last_run_never_before_its_start() -> None:
    assert next_run_after_change({"recurrenceInterval": "PT1H"}, LAST, NOW) == str(LAST + 60 * MINUTE)
    assert next_run_after_change({"recurrenceInterval": "PT1H", "doNotRunUntil": MARCH}, LAST, NOW) == MARCH_MS


def test_without_an_interval_it_runs_again_only_for_a_later_start() -> None:
    assert next_run_after_change({}, LAST, NOW) == ""
    assert next_run_after_change({"doNotRunUntil": MARCH}, LAST, NOW) == MARCH_MS
    since_last = "2027-01-15T07:55:00Z"
    assert next_run_after_change({"doNotRunUntil": since_last}, LAST, NOW) == str(NOW)
    assert next_run_after_change({"doNotRunUntil": "2020-01-01T00:00:00Z"}, LAST, NOW) == ""


def test_missed_recurrences_are_skipped_not_caught_up() -> None:
    hour = timedelta(hours=1)
    # Last ran three days ago, now hourly: the next run is the first hourly point not yet past
    three_days_ago = NOW - 72 * 60 * MINUTE - 10 * MINUTE
    assert first_due(three_days_ago, hour, NOW) == NOW + 50 * MINUTE
    assert next_run_after_change({"recurrenceInterval": "PT1H"}, three_days_ago, NOW) == str(NOW + 50 * MINUTE)
    # A recurrence still ahead, or exactly now, is kept
    assert first_due(LAST, hour, NOW) == LAST + 60 * MINUTE
    assert first_due(NOW - 60 * MINUTE, hour, NOW) == NOW


def test_a_run_can_start_only_within_its_start_window() -> None:
    due = NOW - 2 * MINUTE
    assert not window_missed(due, None, NOW)
    assert not window_missed(due, timedelta(minutes=5), NOW)
    assert not window_missed(due, timedelta(minutes=2), NOW)
    assert window_missed(due, timedelta(minutes=1), NOW)
