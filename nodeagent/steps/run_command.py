"""RunCommandLine: run the task's command line and record how it ended."""

from __future__ import annotations

import logging
import shlex
from datetime import UTC, datetime
from typing import ClassVar

from nodeagent.errors import AttemptAbandoned, CommandFailed, ProcessStartError, WallClockExceeded
from nodeagent.layout import task_environment
from nodeagent.messages import FailureCategory
from nodeagent.process import ProcessSpec
from nodeagent.steps.base import TaskContext

log = logging.getLogger(__name__)


def split_command_line(command_line: str) -> tuple[str, ...]:
    """Split a command line with POSIX shell rules (no shell runs it)."""
    if "\0" in command_line:
        raise ProcessStartError("CommandLaunchFailed", "the command line contains a NUL character")
    try:
        argv = tuple(shlex.split(command_line))
    except ValueError as exc:
        raise ProcessStartError("CommandLaunchFailed", f"the command line cannot be split: {exc}") from exc
    if not argv:
        raise ProcessStartError("CommandLaunchFailed", "the command line is empty")
    return argv


def remaining_seconds(ctx: TaskContext) -> float | None:
    """Wall-clock time left for the command, counted from the start of the attempt."""
    limit = ctx.spec.max_wall_clock_seconds
    if limit is None:
        return None
    elapsed = (datetime.now(UTC) - ctx.started_at).total_seconds()
    return max(limit - elapsed, 0.0)


class RunCommandLine:
    """Start the command in the working directory and wait for it, its timeout or its cancellation."""

    name: ClassVar[str] = "RunCommandLine"
    category: ClassVar[FailureCategory] = "usererror"

    def run(self, ctx: TaskContext) -> None:
        """Run the process; a non-zero exit or a timeout becomes the attempt's failure."""
        if ctx.cancel.is_set():
            raise AttemptAbandoned(ctx.attempt_id)
        argv = split_command_line(ctx.spec.command_line)
        ctx.env = task_environment(ctx.layout, ctx.dirs, ctx.spec, ctx.run_as, ctx.deps.agent_path)
        log.info("attempt %s: starting %s", ctx.attempt_id, argv[0])
        ctx.process = ctx.deps.run_process(self._process_spec(ctx, argv))
        if ctx.process.cancelled:
            raise AttemptAbandoned(ctx.attempt_id)
        if ctx.process.timed_out:
            raise WallClockExceeded(
                "MaxWallClockTimeExceeded",
                f"the task ran longer than its maxWallClockTime of {ctx.spec.max_wall_clock_seconds} seconds",
            )
        if ctx.exit_code != 0:
            message = f"the task process exited with an unexpected exit code {ctx.exit_code}"
            raise CommandFailed("FailureExitCode", message)

    def _process_spec(self, ctx: TaskContext, argv: tuple[str, ...]) -> ProcessSpec:
        """The ProcessSpec of this attempt."""

        def started(pid: int) -> None:
            ctx.process_started = True
            if ctx.deps.on_process_start is not None:
                ctx.deps.on_process_start(ctx.attempt_id, pid)

        return ProcessSpec(
            argv=argv,
            cwd=ctx.dirs.wd,
            env=ctx.env,
            stdout_path=ctx.dirs.stdout,
            stderr_path=ctx.dirs.stderr,
            timeout=remaining_seconds(ctx),
            kill_grace=ctx.deps.kill_grace,
            run_as=ctx.run_as,
            cancel=ctx.cancel,
            on_start=started,
        )
