"""What an attempt's outcome means for its task: complete it, or queue a retry. Pure functions."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from nodeagent.messages import FailureInfo, TaskReport


@dataclass(frozen=True)
class AttemptEnd:
    """The decided change: `mode` is "completed" or "retry"; `fields` are the task's new values."""

    mode: str
    result: str
    fields: dict[str, str] = field(default_factory=dict)


def may_retry(retries: int, max_retries: int) -> bool:
    """True while another retry is allowed (-1 means unlimited)."""
    return max_retries == -1 or retries < max_retries


def exit_failure(exit_code: int) -> FailureInfo:
    """The failureInfo of a task whose command exited non-zero."""
    return FailureInfo(
        category="usererror",
        code="FailureExitCode",
        message=f"The task process exited with an unexpected exit code {exit_code}",
    )


def end_of_attempt(report: TaskReport, retries: int, max_retries: int, now: str) -> AttemptEnd:
    """Decide how a reported attempt ends its task.

    A non-zero exit is retried while retries remain (retryCount + 1). A pre-processing
    error, an upload error or a wall-clock kill completes the task as failed at once,
    as the service does: those are not retried.
    """
    exit_code = "" if report.exit_code is None else str(report.exit_code)
    succeeded = report.outcome == "exited" and report.exit_code == 0
    if report.outcome == "exited" and not succeeded and may_retry(retries, max_retries):
        fields = {"state": "active", "stt": now, "modified": now, "retries": str(retries + 1), "exit": exit_code}
        return AttemptEnd("retry", "", {**fields, "end": "", "result": "", "failure": ""})
    failure = report.failure
    if failure is None and not succeeded and report.exit_code is not None:
        failure = exit_failure(report.exit_code)
    result = "success" if succeeded else "failure"
    fields = {
        "state": "completed",
        "stt": now,
        "modified": now,
        "end": now,
        "exit": exit_code,
        "result": result,
        "failure": json.dumps(failure.model_dump(mode="json")) if failure and not succeeded else "",
    }
    return AttemptEnd("completed", result, fields)


def task_ended_failure(reason: str) -> FailureInfo:
    """The failureInfo of a running task killed because its job ended."""
    return FailureInfo(category="usererror", code="TaskEnded", message=f"The task was terminated: {reason}")
