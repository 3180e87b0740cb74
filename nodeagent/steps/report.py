"""ReportResult (finalizer): build the attempt's TaskReport and deliver it to the controller."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import ClassVar

from nodeagent.cgroups import ResourceUsage
from nodeagent.errors import StepError
from nodeagent.messages import FailureCategory, TaskReport, TaskStats
from nodeagent.process import ProcessResult
from nodeagent.steps.base import TaskContext

log = logging.getLogger(__name__)


def build_stats(process: ProcessResult | None, usage: ResourceUsage | None) -> TaskStats | None:
    """The attempt's TaskStats: cgroup (or sampled) usage, CPU from rusage where no cgroup measured it."""
    if process is None:
        return None
    measured = usage or ResourceUsage()
    return TaskStats(
        user_cpu_seconds=_or(measured.user_cpu_seconds, process.user_cpu_seconds),
        kernel_cpu_seconds=_or(measured.kernel_cpu_seconds, process.kernel_cpu_seconds),
        wall_clock_seconds=max((process.ended_at - process.started_at).total_seconds(), 0.0),
        peak_memory_bytes=measured.peak_memory_bytes or 0,
        read_bytes=measured.read_bytes or 0,
        write_bytes=measured.write_bytes or 0,
        read_ops=measured.read_ops or 0,
        write_ops=measured.write_ops or 0,
    )


def _or(value: float | None, fallback: float) -> float:
    """`value`, or `fallback` when it was not measured."""
    return fallback if value is None else value


def build_report(ctx: TaskContext, node_id: str, now: datetime | None = None) -> TaskReport:
    """The TaskReport describing how the attempt ended."""
    end = now or datetime.now(UTC)
    failure = ctx.failure
    if failure is None and ctx.process is None:
        failure = StepError("AgentInternalError", "the attempt stopped before its command ran", category="servererror")
    process = ctx.process
    stats = build_stats(process, ctx.usage)
    return TaskReport(
        node_id=node_id,
        outcome=failure.outcome if failure is not None else "exited",
        exit_code=ctx.exit_code,
        start_time=ctx.started_at,
        end_time=end,
        failure=failure.failure_info() if failure is not None else None,
        user_cpu_seconds=stats.user_cpu_seconds if stats else 0.0,
        kernel_cpu_seconds=stats.kernel_cpu_seconds if stats else 0.0,
        wall_clock_seconds=max((end - ctx.started_at).total_seconds(), 0.0),
        stats=stats,
    )


class ReportResult:
    """Deliver the report (spooled until the controller answers); skipped for an abandoned attempt."""

    name: ClassVar[str] = "ReportResult"
    category: ClassVar[FailureCategory] = "servererror"

    def run(self, ctx: TaskContext) -> None:
        """Build the report and deliver it."""
        if ctx.abandoned:
            log.info("attempt %s: abandoned, not reported", ctx.attempt_id)
            return
        ctx.report = build_report(ctx, ctx.spec.node_id)
        log.info("attempt %s: outcome %s exit code %s", ctx.attempt_id, ctx.report.outcome, ctx.report.exit_code)
        ctx.deps.reporter.deliver(ctx.attempt_id, ctx.report)
