"""A job's preparation and release tasks on this node: once per job, in the job's directory, reported.

Preparation runs before the first task of its job here, inside the attempt that needs it; attempts
of the same job wait for that one run. It runs again only after an agent restart, and then only when
`rerunOnNodeRebootAfterSuccess` is set. With `waitForSuccess` (the default) the attempt runs only
once preparation succeeded (retried per its `maxTaskRetryCount`); a preparation that failed keeps
every task of that job off this node. Without it, preparation runs in the background and the
attempt goes on at once.

Release runs when the controller asks for it (in a heartbeat answer), once per job, in the
background and without a slot, never retried.

Both run the attempt steps a task runs (directories, packages, resource files, the command) in
`workitems/<job>/job-1/<id>` and are reported to the controller as `JobTaskReport`s. What ran here is
remembered in `volatile/jobtasks/<job>.json`, so an agent restart neither repeats a release nor loses
a preparation's outcome.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nodeagent import identity
from nodeagent.layout import NodeLayout, check_name
from nodeagent.messages import AttemptSpec, FailureInfo, JobPreparationSpec, JobTaskKind, JobTaskReport
from nodeagent.state import StepState, write_atomic
from nodeagent.steps import DownloadResourceFiles, InstallPackages, PrepareDirs, RunCommandLine
from nodeagent.steps.base import RunDeps, TaskContext

log = logging.getLogger(__name__)

RETRY_DELAY_SECONDS = 1.0
"""Pause between tries of a failed preparation."""


@dataclass(frozen=True)
class Outcome:
    """How one run of a job task ended."""

    exit_code: int | None
    failure: FailureInfo | None
    stopped: bool = False
    """The run was stopped before it ended (its attempt was cancelled)."""

    @property
    def succeeded(self) -> bool:
        """True when the command ran and exited 0."""
        return self.failure is None and not self.stopped


def instance(task: AttemptSpec) -> str:
    """The job instance a preparation or release task belongs to (its attempt id without the kind)."""
    return task.attempt_id.split("-", 1)[-1].lower()


class JobTasks:
    """Runs the preparation and release tasks of the jobs whose attempts reach this node."""

    def __init__(
        self,
        layout: NodeLayout,
        deps: Callable[[], RunDeps],
        send: Callable[[JobTaskReport], None],
        boot_id: str,
        retry_delay: float = RETRY_DELAY_SECONDS,
    ) -> None:
        self._layout = layout
        self._deps = deps
        self._send = send
        self._boot_id = boot_id
        self._retry_delay = retry_delay
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._background: set[str] = set()

    def prepare(self, preparation: JobPreparationSpec, cancel: threading.Event) -> bool:
        """Make sure the job's preparation ran here; True when the attempt may run."""
        task = preparation.task
        if not preparation.wait_for_success:
            if self._needs_run(preparation) and self._begin_background(instance(task), "preparation"):
                threading.Thread(
                    target=self._prepare_now, args=(preparation, cancel), name=f"jobprep-{task.job_id}", daemon=True
                ).start()
            return True
        with self._lock(instance(task)):
            if self._needs_run(preparation):
                self._prepare_now(preparation, cancel)
            return self._record(instance(task)).get("preparation") == "success"

    def release(self, task: AttemptSpec) -> None:
        """Run the job's release task in the background, once; when it already ran, send its report again."""
        if self._begin_background(instance(task), "release"):
            threading.Thread(
                target=self._release_once, args=(task,), name=f"jobrelease-{task.job_id}", daemon=True
            ).start()

    def _release_once(self, task: AttemptSpec) -> None:
        key = instance(task)
        try:
            sent = self._record(key).get("release_report")
            if sent:
                self._report(JobTaskReport.model_validate_json(sent))
                return
            started = datetime.now(UTC)
            self._report(JobTaskReport.running(task, "release", started, self._task_root(task)))
            report = self._completed(task, "release", started, self._run(task, threading.Event()))
            self._update(key, release_report=report.model_dump_json())
            self._report(report)
        finally:
            self._end_background(key, "release")

    def _begin_background(self, key: str, kind: JobTaskKind) -> bool:
        """Claim the one background run of this kind for the job instance; False when one is under way."""
        with self._guard:
            if f"{kind}:{key}" in self._background:
                return False
            self._background.add(f"{kind}:{key}")
            return True

    def _end_background(self, key: str, kind: JobTaskKind) -> None:
        with self._guard:
            self._background.discard(f"{kind}:{key}")

    def _needs_run(self, preparation: JobPreparationSpec) -> bool:
        record = self._record(instance(preparation.task))
        result = record.get("preparation")
        if not result or result == "running":
            return True
        rebooted = record.get("boot") != self._boot_id
        return result == "success" and rebooted and preparation.rerun_on_node_reboot_after_success

    def _prepare_now(self, preparation: JobPreparationSpec, cancel: threading.Event) -> None:
        """Run the preparation until it succeeds or its retries are used up; record and report it."""
        task, key = preparation.task, instance(preparation.task)
        try:
            started, retries, last_retry = datetime.now(UTC), 0, None
            self._update(key, preparation="running")
            self._report(JobTaskReport.running(task, "preparation", started, self._task_root(task)))
            while True:
                outcome = self._run(task, cancel)
                limit = preparation.max_task_retry_count
                if outcome.succeeded or outcome.stopped or (limit >= 0 and retries >= limit):
                    break
                log.info("job %s: preparation failed (%s), retry %s", task.job_id, outcome.exit_code, retries + 1)
                if cancel.wait(self._retry_delay):
                    outcome = Outcome(outcome.exit_code, outcome.failure, stopped=True)
                    break
                retries, last_retry = retries + 1, datetime.now(UTC)
        finally:
            self._end_background(key, "preparation")
        if outcome.stopped:
            log.info("job %s: preparation stopped half-way; it runs again with the next task", task.job_id)
            self._update(key, preparation="")
            return
        result = "success" if outcome.succeeded else "failure"
        self._update(key, preparation=result, boot=self._boot_id)
        report = self._completed(task, "preparation", started, outcome)
        self._report(report.model_copy(update={"retry_count": retries, "last_retry_time": last_retry}))

    def _run(self, task: AttemptSpec, cancel: threading.Event) -> Outcome:
        """One run of a job task through the attempt steps (no uploads, no task report)."""
        from nodeagent.runner import run_steps  # the runner's steps include the one that calls back here

        dirs = self._layout.task_dirs(task.job_id, task.task_id)
        ctx = TaskContext(
            spec=task,
            layout=self._layout,
            dirs=dirs,
            run_as=identity.unprivileged(),
            deps=self._deps(),
            state=StepState(self._layout.state_file(task.attempt_id)),
            cancel=cancel,
        )
        try:
            run_steps(ctx, [PrepareDirs(), InstallPackages(), DownloadResourceFiles(), RunCommandLine()], [])
        finally:
            ctx.state.remove()
        failure = ctx.failure.failure_info() if ctx.failure is not None else None
        return Outcome(exit_code=ctx.exit_code, failure=failure, stopped=ctx.abandoned or cancel.is_set())

    def _completed(self, task: AttemptSpec, kind: JobTaskKind, started: datetime, outcome: Outcome) -> JobTaskReport:
        return JobTaskReport(
            job_id=task.job_id,
            node_id=task.node_id,
            kind=kind,
            state="completed",
            start_time=started,
            end_time=datetime.now(UTC),
            exit_code=outcome.exit_code,
            failure=outcome.failure,
            result="success" if outcome.succeeded else "failure",
            task_root_directory=self._task_root(task),
        )

    def _task_root(self, task: AttemptSpec) -> str:
        """The job task's directory relative to the node root (as the files API names it)."""
        return str(self._layout.task_dirs(task.job_id, task.task_id).task_dir.relative_to(self._layout.root))

    def _report(self, report: JobTaskReport) -> None:
        try:
            self._send(report)
        except Exception as error:  # noqa: BLE001 - a lost status report must not stop the job task
            log.warning("job %s: %s report not delivered: %s", report.job_id, report.kind, error)

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _path(self, key: str) -> Path:
        return self._layout.volatile / "jobtasks" / f"{check_name(key)}.json"

    def _record(self, key: str) -> dict[str, Any]:
        try:
            loaded = json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def _update(self, key: str, **fields: str) -> None:
        with self._guard:
            record = {**self._record(key), **fields}
            write_atomic(self._path(key), json.dumps(record, sort_keys=True).encode(), durable=False)
