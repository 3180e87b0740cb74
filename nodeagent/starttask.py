"""The pool's start task: run in `<root>/startup`, retried on a non-zero exit up to its retry count.

Each try gets fresh `startup/stdout.txt` and `startup/stderr.txt`, downloads
its resource files into `startup/wd` (kept between tries and runs: a start
task must be idempotent) and runs the command there, as its user identity,
with the start task's environment (no job or task id). The working directory
belongs to that user and is readable by every task (0755), since tasks use
what the start task installs there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from nodeagent import process
from nodeagent.blob import BlobStore
from nodeagent.errors import StepError
from nodeagent.identity import RunAs
from nodeagent.layout import NodeLayout, start_task_environment
from nodeagent.messages import FailureInfo, PoolConfig, StartTaskReport, StartTaskSpec
from nodeagent.ownership import fresh_file, own_dir
from nodeagent.process import ProcessResult, ProcessSpec
from nodeagent.steps.download_resources import parse_file_mode, place_files
from nodeagent.steps.run_command import split_command_line

log = logging.getLogger(__name__)

STARTUP_WD_MODE = 0o755
"""Mode of `startup/wd`: the start task's user writes it, every task reads it."""

LOG_FILE_MODE = 0o600
"""Mode of the start task's stdout.txt and stderr.txt."""

CONTAINER_UNSUPPORTED = "StartTaskContainerNotSupported"
"""Failure code of a start task with container settings, which this agent cannot run yet."""


@dataclass(frozen=True)
class StartTaskRun:
    """Everything one run of the start task needs."""

    config: PoolConfig
    spec: StartTaskSpec
    node_id: str
    layout: NodeLayout
    run_as: RunAs
    blob: BlobStore
    agent_path: str
    run_process: process.RunFunction = process.run
    kill_grace: float = 5.0
    retry_delay: float = 1.0


@dataclass(frozen=True)
class _Try:
    """How one try ended: its exit code (None when the command never ran) and its failure."""

    exit_code: int | None
    failure: FailureInfo | None


def run(
    start: StartTaskRun, cancel: threading.Event, on_update: Callable[[StartTaskReport], None]
) -> StartTaskReport | None:
    """Run the start task until it succeeds or its retries are used up; the final report, None when cancelled."""
    retries = 0
    last_retry: datetime | None = None
    while True:
        started = datetime.now(UTC)
        on_update(StartTaskReport(state="running", start_time=started, retry_count=retries, last_retry_time=last_retry))
        outcome = _try_once(start, cancel)
        if outcome is None:
            return None
        report = _completed(started, outcome, retries, last_retry)
        if report.result == "success" or not may_retry(start.spec, retries):
            on_update(report)
            return report
        log.info("node %s: start task failed (%s), retry %s", start.node_id, outcome.exit_code, retries + 1)
        if cancel.wait(start.retry_delay):
            return None
        retries += 1
        last_retry = datetime.now(UTC)


def may_retry(spec: StartTaskSpec, retries: int) -> bool:
    """True while the retry count allows another try (-1 retries without limit)."""
    return spec.max_task_retry_count < 0 or retries < spec.max_task_retry_count


def failed_report(failure: FailureInfo) -> StartTaskReport:
    """A completed, failed start task that never ran (its identity or settings were refused)."""
    now = datetime.now(UTC)
    return StartTaskReport(state="completed", start_time=now, end_time=now, result="failure", failure=failure)


def _completed(started: datetime, outcome: _Try, retries: int, last_retry: datetime | None) -> StartTaskReport:
    """The report of a finished try."""
    return StartTaskReport(
        state="completed",
        start_time=started,
        end_time=datetime.now(UTC),
        exit_code=outcome.exit_code,
        retry_count=retries,
        last_retry_time=last_retry,
        result="success" if outcome.failure is None else "failure",
        failure=outcome.failure,
    )


def _try_once(start: StartTaskRun, cancel: threading.Event) -> _Try | None:
    """Prepare, download and run once; None when cancelled."""
    try:
        argv = _prepare(start, cancel)
        if cancel.is_set():
            return None
        result = start.run_process(_process_spec(start, argv, cancel))
    except StepError as exc:
        return _Try(None, exc.failure_info())
    except OSError as exc:
        failure = FailureInfo(
            category="servererror", code="ResourceDirectoryCreateFailed", message=f"cannot prepare startup/: {exc}"
        )
        return _Try(None, failure)
    if result.cancelled:
        return None
    return _exited(result)


def _prepare(start: StartTaskRun, cancel: threading.Event) -> tuple[str, ...]:
    """Create the start task's directories and fresh logs, download its resource files; its argv."""
    if start.spec.container is not None:
        raise StepError(CONTAINER_UNSUPPORTED, "this node cannot run a start task in a container")
    layout = start.layout
    layout.startup.mkdir(exist_ok=True)
    own_dir(layout.startup_wd, start.run_as, STARTUP_WD_MODE)
    for name in ("stdout.txt", "stderr.txt"):
        fresh_file(layout.startup / name, start.run_as, LOG_FILE_MODE)
    for source in start.spec.resource_files:
        if cancel.is_set():
            break
        paths = start.blob.download(source, layout.startup_wd)
        place_files(paths, parse_file_mode(source.file_mode), layout.startup_wd, start.run_as)
    return split_command_line(start.spec.command_line)


def _process_spec(start: StartTaskRun, argv: tuple[str, ...], cancel: threading.Event) -> ProcessSpec:
    """The ProcessSpec of one try."""
    layout = start.layout
    return ProcessSpec(
        argv=argv,
        cwd=layout.startup_wd,
        env=start_task_environment(layout, start.config, start.node_id, start.run_as, start.agent_path),
        stdout_path=layout.startup / "stdout.txt",
        stderr_path=layout.startup / "stderr.txt",
        kill_grace=start.kill_grace,
        run_as=start.run_as,
        cancel=cancel,
    )


def _exited(result: ProcessResult) -> _Try:
    """The outcome of a try whose command ran."""
    code = result.exit_code if result.exit_code is not None else 128 + (result.signal or 0)
    if code == 0:
        return _Try(0, None)
    failure = FailureInfo(
        category="usererror",
        code="FailureExitCode",
        message=f"the start task process exited with an unexpected exit code {code}",
    )
    return _Try(code, failure)
