from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from nodeagent.errors import DownloadError
from nodeagent.process import ProcessResult
from nodeagent.steps import ReportResult
from nodeagent.steps.base import Step
from nodeagent.steps.report import build_report
from nodeagent.testing import FakeReporter, make_context

_: Step = ReportResult()


def finished(exit_code: int | None, signal: int | None = None) -> ProcessResult:
    now = datetime.now(UTC)
    return ProcessResult(
        exit_code=exit_code,
        signal=signal,
        timed_out=False,
        cancelled=False,
        started_at=now,
        ended_at=now,
        user_cpu_seconds=0.5,
        kernel_cpu_seconds=0.25,
    )


def test_success_report(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    ctx.process = finished(0)
    end = ctx.started_at + timedelta(seconds=3)
    report = build_report(ctx, "node-1", now=end)
    assert (report.outcome, report.exit_code, report.failure) == ("exited", 0, None)
    assert (report.user_cpu_seconds, report.kernel_cpu_seconds, report.wall_clock_seconds) == (0.5, 0.25, 3.0)


def test_failure_report_carries_failure_info(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    ctx.fail(DownloadError("BlobAccessDenied", "denied", details={"FilePath": "x"}))
    report = build_report(ctx, "node-1")
    assert report.outcome == "preprocessing_error" and report.exit_code is None
    assert report.failure is not None
    assert (report.failure.category, report.failure.code, report.failure.details[0].value) == (
        "usererror",
        "BlobAccessDenied",
        "x",
    )


def test_signal_death_reports_128_plus_signal(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    ctx.process = finished(None, signal=9)
    assert build_report(ctx, "n").exit_code == 137


def test_nothing_ran_and_nothing_failed_is_an_internal_error(tmp_path: Path) -> None:
    report = build_report(make_context(tmp_path), "n")
    assert report.failure is not None and report.failure.category == "servererror"


def test_delivers_to_the_reporter(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    ctx.process = finished(0)
    ReportResult().run(ctx)
    assert isinstance(ctx.deps.reporter, FakeReporter)
    assert ctx.deps.reporter.reports == [("attempt-1", ctx.report)]


def test_abandoned_attempt_is_not_reported(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    ctx.abandoned = True
    ReportResult().run(ctx)
    assert isinstance(ctx.deps.reporter, FakeReporter)
    assert ctx.deps.reporter.reports == []
