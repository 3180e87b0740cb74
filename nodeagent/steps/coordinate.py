"""The steps of a multi-instance task's instances: common files, the coordination command, and its end.

Every instance downloads the common resource files into the task directory and runs the coordination
command in the working directory. That command blocks until the services it starts are ready; what
it leaves running in its process group (an MPI daemon, a rank process) keeps running. Each instance
tells the controller how its coordination ended. The primary then waits until every instance
coordinated and goes on to the task's command; a subtask holds its slot until the controller ends the
task (its attempt turns stale when the primary finished, and the agent cancels it); a subtask that
failed before it could coordinate sends that failure instead (ReportUncoordinated), so the primary
fails the task. StopCoordination, a finalizer, stops whatever the coordination command left running.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import ClassVar

from nodeagent import process
from nodeagent.errors import AttemptAbandoned, StepError
from nodeagent.layout import task_environment
from nodeagent.messages import Coordinated, FailureCategory, FailureInfo, MultiInstanceSpec
from nodeagent.process import ProcessResult, ProcessSpec
from nodeagent.steps.base import Gang, TaskContext
from nodeagent.steps.download_resources import download_all
from nodeagent.steps.run_command import split_command_line

log = logging.getLogger(__name__)

GANG_POLL_SECONDS = 0.2
"""How often the primary asks whether every instance coordinated."""

FAILED_CODE = "SubtaskFailed"
"""Failure code of a multi-instance task one of whose instances failed to coordinate."""


def _instance(ctx: TaskContext) -> MultiInstanceSpec:
    if ctx.spec.multi_instance is None:
        raise StepError("AgentInternalError", "not a multi-instance attempt", category="servererror")
    return ctx.spec.multi_instance


def _gang(ctx: TaskContext) -> Gang:
    if ctx.deps.gang is None:
        raise StepError("AgentInternalError", "multi-instance tasks need the controller", category="servererror")
    return ctx.deps.gang


class DownloadCommonResourceFiles:
    """Download the multi-instance settings' common resource files into the task directory (every instance)."""

    name: ClassVar[str] = "DownloadCommonResourceFiles"
    category: ClassVar[FailureCategory] = "usererror"

    def run(self, ctx: TaskContext) -> None:
        """Download every common file below the task directory, one level above `wd`."""
        download_all(ctx, _instance(ctx).common_resource_files, ctx.dirs.task_dir)


class Coordinate:
    """Run the coordination command, report it, then wait: the primary for the others, a subtask for the end."""

    name: ClassVar[str] = "Coordinate"
    category: ClassVar[FailureCategory] = "usererror"

    def run(self, ctx: TaskContext) -> None:
        """Coordinate this instance with the others."""
        instance, gang = _instance(ctx), _gang(ctx)
        started = datetime.now(UTC)
        exit_code: int | None = None
        try:
            result = self._run_coordination(ctx, instance)
            exit_code, failure = result.exit_code, _failure(result)
        except StepError as error:
            failure = error.failure_info()
        _tell(ctx, gang, started, exit_code, failure)
        if not instance.is_primary:
            log.info("attempt %s: subtask %s coordinated; holding its node", ctx.attempt_id, instance.subtask_id)
            ctx.cancel.wait()
            raise AttemptAbandoned(ctx.attempt_id)
        if failure is not None:
            raise StepError(failure.code, f"the coordination command failed: {failure.message}", outcome="exited")
        self._wait_for_gang(ctx, gang)

    def _run_coordination(self, ctx: TaskContext, instance: MultiInstanceSpec) -> ProcessResult:
        argv = split_command_line(instance.coordination_command_line)
        ctx.env = task_environment(ctx.layout, ctx.dirs, ctx.spec, ctx.run_as, ctx.deps.agent_path)
        spec = ProcessSpec(
            argv=argv,
            cwd=ctx.dirs.wd,
            env=ctx.env,
            stdout_path=ctx.dirs.task_dir / "coordination-stdout.txt",
            stderr_path=ctx.dirs.task_dir / "coordination-stderr.txt",
            kill_grace=ctx.deps.kill_grace,
            run_as=ctx.run_as,
            cancel=ctx.cancel,
            keep_group=True,
            on_start=lambda pid: setattr(ctx, "coordination_group", pid),
        )
        result = ctx.deps.run_process(spec)
        if result.cancelled:
            raise AttemptAbandoned(ctx.attempt_id)
        return result

    def _wait_for_gang(self, ctx: TaskContext, gang: Gang) -> None:
        """Wait until every instance coordinated; a failed one fails the task."""
        while not ctx.cancel.is_set():
            state = gang.gang(ctx.attempt_id)
            if state.state == "ready":
                return
            if state.state == "failed":
                reason = state.failure.message if state.failure else "an instance failed"
                raise StepError(FAILED_CODE, f"a subtask failed to coordinate: {reason}", outcome="exited")
            ctx.cancel.wait(GANG_POLL_SECONDS)
        raise AttemptAbandoned(ctx.attempt_id)


def _tell(ctx: TaskContext, gang: Gang, started: datetime, exit_code: int | None, failure: FailureInfo | None) -> None:
    """Tell the controller how this instance's coordination ended."""
    result = Coordinated(
        node_id=ctx.spec.node_id, exit_code=exit_code, start_time=started, end_time=datetime.now(UTC), failure=failure
    )
    gang.coordinated(ctx.attempt_id, result)
    ctx.coordinated = True


class ReportUncoordinated:
    """Finalizer of a subtask: one that failed before it could coordinate fails its task through the primary."""

    name: ClassVar[str] = "ReportUncoordinated"
    category: ClassVar[FailureCategory] = "servererror"

    def run(self, ctx: TaskContext) -> None:
        """Send the earlier step's failure as this instance's coordination result."""
        if ctx.coordinated or ctx.abandoned or ctx.failure is None or ctx.deps.gang is None:
            return
        _tell(ctx, ctx.deps.gang, ctx.started_at, None, ctx.failure.failure_info())


def _failure(result: ProcessResult) -> FailureInfo | None:
    """The failure of a coordination command that did not exit 0."""
    if result.exit_code == 0:
        return None
    code = result.exit_code if result.exit_code is not None else 128 + (result.signal or 0)
    return FailureInfo(
        category="usererror",
        code="FailureExitCode",
        message=f"the coordination command exited with an unexpected exit code {code}",
    )


class StopCoordination:
    """Finalizer: stop whatever the coordination command left running."""

    name: ClassVar[str] = "StopCoordination"
    category: ClassVar[FailureCategory] = "servererror"

    def run(self, ctx: TaskContext) -> None:
        """Kill the coordination command's process group."""
        if ctx.coordination_group is not None:
            process.kill_group(ctx.coordination_group)
