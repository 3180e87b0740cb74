"""RunCommandLine: run the task's command line (directly or in a container) and record how it ended.

The process starts in the attempt's cgroup (see `nodeagent.cgroups`); after it
ends, whatever is left in the cgroup is killed, its usage is read into
`ctx.usage`, and the cgroup is removed. Without cgroups
the usage comes from the process's rusage and a sampler of its process tree.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from nodeagent import cgroups, container, diskspace
from nodeagent.cgroups import AttemptCgroup, ResourceUsage, TreeSampler
from nodeagent.container import ContainerRuntime, RunRequest
from nodeagent.errors import (
    AttemptAbandoned,
    CommandFailed,
    ProcessLost,
    ProcessStartError,
    StepError,
    WallClockExceeded,
)
from nodeagent.layout import task_environment
from nodeagent.messages import ContainerSpec, FailureCategory
from nodeagent.process import ProcessResult, ProcessSpec
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


@dataclass
class Launch:
    """The argv and environment that start an attempt's command, and what to undo after it."""

    argv: tuple[str, ...]
    env: dict[str, str]
    after: list[Callable[[ProcessResult | None], None]] = field(default_factory=list)

    def finish(self, result: ProcessResult | None) -> None:
        """Run the after-actions, last added first."""
        for action in reversed(self.after):
            action(result)


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
        launch = _container_launch(ctx, ctx.spec.container, argv) if ctx.spec.container else Launch(argv, ctx.env)
        log.debug("attempt %s: starting %s", ctx.attempt_id, launch.argv[0])
        try:
            ctx.process = self._run_measured(ctx, launch)
        finally:
            launch.finish(ctx.process)
        _check_result(ctx, ctx.process)

    def _run_measured(self, ctx: TaskContext, launch: Launch) -> ProcessResult:
        """Run the launch inside the attempt's cgroup (or under the sampler), recording the usage."""
        cgroup = cgroups.create(ctx.deps.cgroups, ctx.attempt_id)
        sampler = TreeSampler() if cgroup is None else None
        try:
            return ctx.deps.run_process(self._process_spec(ctx, launch, cgroup, sampler))
        except ProcessLost as exc:
            log.warning("attempt %s: %s; the attempt is given up", ctx.attempt_id, exc.message)
            raise AttemptAbandoned(ctx.attempt_id) from exc
        finally:
            ctx.usage = collect_usage(cgroup, sampler)

    def _process_spec(
        self,
        ctx: TaskContext,
        launch: Launch,
        cgroup: AttemptCgroup | None,
        sampler: TreeSampler | None,
    ) -> ProcessSpec:
        """The ProcessSpec of this attempt."""

        def started(pid: int) -> None:
            ctx.process_started = True
            if sampler is not None:
                sampler.start(pid)
            if ctx.deps.on_process_start is not None:
                ctx.deps.on_process_start(ctx.attempt_id, pid)

        return ProcessSpec(
            argv=launch.argv,
            cwd=ctx.dirs.wd,
            env=launch.env,
            stdout_path=ctx.dirs.stdout,
            stderr_path=ctx.dirs.stderr,
            timeout=remaining_seconds(ctx),
            kill_grace=ctx.deps.kill_grace,
            run_as=ctx.run_as,
            cancel=ctx.cancel,
            on_start=started,
            cgroup=cgroup,
        )


def collect_usage(cgroup: AttemptCgroup | None, sampler: TreeSampler | None) -> ResourceUsage:
    """Stop the sampler; kill what is left in the cgroup, read its usage and remove it."""
    usage = ResourceUsage()
    if cgroup is not None:
        emptied = cgroup.kill()
        usage = cgroup.usage()
        cgroups.release(cgroup, emptied=emptied)
    if sampler is not None:
        usage = usage.merged(sampler.stop())
    return usage


def _check_result(ctx: TaskContext, result: ProcessResult) -> None:
    """Raise the failure a finished process means, if any."""
    # A fenced attempt's group is killed before the command notices the cancel: it is abandoned all the same.
    if result.cancelled or ctx.cancel.is_set():
        raise AttemptAbandoned(ctx.attempt_id)
    if result.timed_out:
        raise WallClockExceeded(
            "MaxWallClockTimeExceeded",
            f"the task ran longer than its maxWallClockTime of {ctx.spec.max_wall_clock_seconds} seconds",
        )
    if ctx.exit_code != 0:
        if diskspace.is_full(ctx.dirs.task_dir):
            message = f"the task exited with code {ctx.exit_code} and the disk of its directory is full"
            raise diskspace.disk_full(message, "exited")
        raise CommandFailed("FailureExitCode", f"the task process exited with an unexpected exit code {ctx.exit_code}")


def _container_launch(ctx: TaskContext, settings: ContainerSpec, argv: tuple[str, ...]) -> Launch:
    """The `<runtime> run ...` launch of a container task, logging in to its registry first."""
    runtime = container.require(ctx.deps.container_runtime)
    request = RunRequest(
        runtime=runtime,
        spec=ctx.spec,
        container=settings,
        command=argv,
        env=ctx.env,
        mounts=container.bind_mounts(settings, ctx.layout, ctx.dirs, ctx.spec),
        working_dir=ctx.dirs.wd,
    )
    launch = Launch((), dict(ctx.env))
    launch.after.append(lambda result: _remove_container(ctx, runtime, result))
    if container.has_credentials(settings):
        request = replace(request, config_dir=_login(ctx, runtime, settings, launch))
    launch.argv = container.run_argv(request)
    return launch


def _login(ctx: TaskContext, runtime: ContainerRuntime, settings: ContainerSpec, launch: Launch) -> Path:
    """Log in with credentials kept in a per-attempt directory that the launch removes afterwards."""
    config_dir = ctx.layout.volatile / "containers" / ctx.attempt_id
    try:
        config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        launch.after.append(lambda _: shutil.rmtree(config_dir, ignore_errors=True))
        container.login(runtime, settings, config_dir, ctx.deps.run_tool)
    except (StepError, OSError):
        launch.finish(None)
        raise
    return config_dir


def _remove_container(ctx: TaskContext, runtime: ContainerRuntime, result: ProcessResult | None) -> None:
    """`rm -f` the container when its client was stopped (timeout or cancellation), so nothing keeps running."""
    if result is None or not (result.timed_out or result.cancelled):
        return
    with tempfile.TemporaryDirectory(prefix="batchyard-rm-") as scratch:
        folder = Path(scratch)
        spec = ProcessSpec(
            argv=container.remove_argv(runtime, ctx.attempt_id),
            cwd=folder,
            env={"PATH": ctx.deps.agent_path},
            stdout_path=folder / "out",
            stderr_path=folder / "err",
            timeout=container.TOOL_TIMEOUT_SECONDS,
            kill_grace=1.0,
        )
        with contextlib.suppress(StepError):
            ctx.deps.run_process(spec)
