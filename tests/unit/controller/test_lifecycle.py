"""How an attempt's outcome ends its task."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from controller.domain.lifecycle import end_of_attempt
from nodeagent.messages import FailureInfo, TaskReport

NOW = "2026-01-01T00:00:00.000000Z"
END = datetime(2026, 1, 1, tzinfo=UTC)


def _report(outcome: str = "exited", exit_code: int | None = 0, failure: FailureInfo | None = None) -> TaskReport:
    return TaskReport(node_id="n", outcome=outcome, exit_code=exit_code, end_time=END, failure=failure)  # type: ignore[arg-type]


def test_exit_zero_completes_with_success() -> None:
    end = end_of_attempt(_report(), retries=0, max_retries=0, now=NOW)
    assert (end.mode, end.result, end.fields["exit"], end.fields["failure"]) == ("completed", "success", "0", "")


def test_non_zero_exit_is_retried_while_retries_remain() -> None:
    end = end_of_attempt(_report(exit_code=2), retries=0, max_retries=1, now=NOW)
    assert (end.mode, end.fields["state"], end.fields["retries"]) == ("retry", "active", "1")


def test_unlimited_retries() -> None:
    assert end_of_attempt(_report(exit_code=2), retries=500, max_retries=-1, now=NOW).mode == "retry"


def test_non_zero_exit_after_retries_fails_with_failure_exit_code() -> None:
    end = end_of_attempt(_report(exit_code=2), retries=1, max_retries=1, now=NOW)
    failure = json.loads(end.fields["failure"])
    assert (end.mode, end.result, failure["code"], failure["category"]) == (
        "completed",
        "failure",
        "FailureExitCode",
        "usererror",
    )


def test_preprocessing_error_is_not_retried_and_has_no_exit_code() -> None:
    failure = FailureInfo(category="usererror", code="BlobNotFound", message="missing")
    end = end_of_attempt(_report("preprocessing_error", None, failure), retries=0, max_retries=5, now=NOW)
    assert (end.mode, end.fields["exit"], json.loads(end.fields["failure"])["code"]) == (
        "completed",
        "",
        "BlobNotFound",
    )
