"""Runs one attempt through its steps, then always through its finalizers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from nodeagent import identity
from nodeagent.errors import AttemptAbandoned, StepError
from nodeagent.layout import NodeLayout
from nodeagent.messages import AttemptSpec, redact
from nodeagent.state import StepState
from nodeagent.steps import (
    DownloadResourceFiles,
    InstallPackages,
    PrepareDirs,
    ReportResult,
    RunCommandLine,
    RunJobPreparation,
    UploadOutputFiles,
)
from nodeagent.steps.base import RunDeps, Step, TaskContext
from nodeagent.steps.coordinate import (
    Coordinate,
    DownloadCommonResourceFiles,
    ReportUncoordinated,
    StopCoordination,
)

log = logging.getLogger(__name__)


def default_steps() -> list[Step]:
    """The main steps, in order."""
    return [PrepareDirs(), RunJobPreparation(), InstallPackages(), DownloadResourceFiles(), RunCommandLine()]


def default_finalizers() -> list[Step]:
    """The finalizers, in order; they run whatever happened before."""
    return [UploadOutputFiles(), ReportResult()]


def multi_instance_steps(spec: AttemptSpec) -> tuple[list[Step], list[Step]]:
    """The steps and finalizers of one instance of a multi-instance task.

    Every instance prepares, installs, downloads the common files and coordinates; the primary then
    downloads its own resource files, runs the command, uploads and reports. A subtask ends when its
    task ends, without a report of its own.
    """
    common: list[Step] = [PrepareDirs(), RunJobPreparation(), InstallPackages(), DownloadCommonResourceFiles()]
    if spec.multi_instance is not None and not spec.multi_instance.is_primary:
        return [*common, Coordinate()], [StopCoordination(), ReportUncoordinated()]
    steps = [*common, DownloadResourceFiles(), Coordinate(), RunCommandLine()]
    return steps, [StopCoordination(), *default_finalizers()]


def steps_for(spec: AttemptSpec) -> tuple[list[Step], list[Step]]:
    """The steps and finalizers an attempt runs."""
    if spec.multi_instance is not None:
        return multi_instance_steps(spec)
    return default_steps(), default_finalizers()


def run(spec: AttemptSpec, layout: NodeLayout, deps: RunDeps, cancel: threading.Event | None = None) -> TaskContext:
    """Run a claimed attempt with the default steps; the finished context (its `report` is what was sent)."""
    ctx = TaskContext(
        spec=spec,
        layout=layout,
        dirs=layout.task_dirs(spec.job_id, spec.task_id),
        run_as=identity.unprivileged(),
        deps=deps,
        state=StepState(layout.state_file(spec.attempt_id)),
        cancel=cancel or threading.Event(),
    )
    steps, finalizers = steps_for(spec)
    try:
        run_steps(ctx, steps, finalizers)
    finally:
        ctx.state.remove()
    return ctx


def run_steps(ctx: TaskContext, steps: Sequence[Step], finalizers: Sequence[Step]) -> None:
    """Run `steps` until one fails, then every finalizer, even when a step raised something unexpected."""
    try:
        for step in steps:
            if not _run_step(ctx, step):
                break
    finally:
        for finalizer in finalizers:
            _run_step(ctx, finalizer)


def _run_step(ctx: TaskContext, step: Step) -> bool:
    """Run one step, recording its failure in the context; True when it succeeded."""
    started = time.monotonic()
    try:
        step.run(ctx)
    except AttemptAbandoned:
        log.info(
            "task %s/%s attempt %s: abandoned during %s", ctx.spec.job_id, ctx.spec.task_id, ctx.attempt_id, step.name
        )
        ctx.abandoned = True
        return False
    except StepError as exc:
        log.warning(
            "task %s/%s attempt %s: step %s failed: %s %s",
            ctx.spec.job_id,
            ctx.spec.task_id,
            ctx.attempt_id,
            step.name,
            exc.code,
            exc.message,
        )
        ctx.fail(exc)
        return False
    except Exception as exc:
        log.exception(
            "task %s/%s attempt %s: step %s crashed", ctx.spec.job_id, ctx.spec.task_id, ctx.attempt_id, step.name
        )
        ctx.fail(StepError("AgentInternalError", redact(f"{step.name} failed: {exc}"), category="servererror"))
        return False
    log.debug("attempt %s: step %s done in %.3fs", ctx.attempt_id, step.name, time.monotonic() - started)
    return True
