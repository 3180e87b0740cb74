"""What a completed task's exit means for its job and its dependents: Azure's exitConditions. Pure functions.

The options that apply are chosen in this order:

| how the task ended | options |
|---|---|
| exit code listed in `exitCodes` | that mapping's |
| exit code inside an `exitCodeRanges` entry | that range's |
| output upload failed (exit code not listed) | `fileUploadError`, else `default` |
| resource files or packages failed | `preProcessingError`, else `default` |
| any other non-zero exit, wall-clock kill | `default` |
| exit code 0 (not listed) | none: the defaults |

An option left out takes its default: `jobAction` is `none` for a successful exit and
`terminate` otherwise, `dependencyAction` is `satisfy` for a successful exit and `block` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nodeagent.messages import AttemptOutcome


@dataclass(frozen=True)
class ExitActions:
    """The job action (`none` | `disable` | `terminate`) and dependency action (`satisfy` | `block`)."""

    job_action: str
    dependency_action: str


def _listed(conditions: dict[str, Any], exit_code: int | None) -> dict[str, Any] | None:
    """The options of the exitCodes or exitCodeRanges entry matching `exit_code`, if any."""
    if exit_code is None:
        return None
    for mapping in conditions.get("exitCodes") or []:
        if mapping.get("code") == exit_code:
            return dict(mapping.get("exitOptions") or {})
    for mapping in conditions.get("exitCodeRanges") or []:
        if mapping.get("start", 0) <= exit_code <= mapping.get("end", -1):
            return dict(mapping.get("exitOptions") or {})
    return None


def _options(conditions: dict[str, Any], outcome: AttemptOutcome, exit_code: int | None) -> dict[str, Any]:
    """The exitOptions object that applies (empty when none does)."""
    listed = _listed(conditions, exit_code) if outcome in ("exited", "upload_error") else None
    if listed is not None:
        return listed
    special = {"upload_error": "fileUploadError", "preprocessing_error": "preProcessingError"}.get(outcome)
    if special and conditions.get(special) is not None:
        return dict(conditions[special])
    if outcome == "exited" and exit_code == 0:
        return {}
    return dict(conditions.get("default") or {})


def exit_actions(conditions: dict[str, Any] | None, outcome: AttemptOutcome, exit_code: int | None) -> ExitActions:
    """The actions a task that completed this way calls for."""
    succeeded = outcome == "exited" and exit_code == 0
    options = _options(conditions or {}, outcome, exit_code)
    return ExitActions(
        job_action=str(options.get("jobAction") or ("none" if succeeded else "terminate")),
        dependency_action=str(options.get("dependencyAction") or ("satisfy" if succeeded else "block")),
    )


ENDED_BY_SERVICE = ExitActions(job_action="none", dependency_action="block")
"""A task completed by the service (terminated, its job ended, its lifetime ran out): dependents stay blocked."""
