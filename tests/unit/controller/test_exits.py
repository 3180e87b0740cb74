from __future__ import annotations

from typing import Any

import pytest

from controller.domain.exits import ExitActions, exit_actions

CONDITIONS: dict[str, Any] = {
    "exitCodes": [
        {"code": 3, "exitOptions": {"jobAction": "disable"}},
        {"code": 0, "exitOptions": {"dependencyAction": "block"}},
    ],
    "exitCodeRanges": [{"start": 10, "end": 20, "exitOptions": {"jobAction": "none", "dependencyAction": "satisfy"}}],
    "preProcessingError": {"jobAction": "none"},
    "fileUploadError": {"dependencyAction": "satisfy"},
    "default": {"jobAction": "terminate", "dependencyAction": "block"},
}  # fmt: skip


@pytest.mark.parametrize(
    ("outcome", "exit_code", "expected"),
    [
        ("exited", 3, ExitActions("disable", "block")),  # listed code; the missing action takes its default
        ("exited", 0, ExitActions("none", "block")),  # exit 0 listed explicitly changes it
        ("exited", 15, ExitActions("none", "satisfy")),  # inside a range
        ("exited", 99, ExitActions("terminate", "block")),  # default
        ("upload_error", 15, ExitActions("none", "satisfy")),  # an exit-code match beats the upload error
        ("upload_error", 5, ExitActions("terminate", "satisfy")),  # unlisted: fileUploadError
        ("upload_error", 0, ExitActions("terminate", "block")),  # listed 0, but the upload failed
        ("preprocessing_error", None, ExitActions("none", "block")),  # preProcessingError
        ("timed_out", None, ExitActions("terminate", "block")),  # default
    ],
)
def test_the_matching_exit_options_apply_with_their_defaults(
    outcome: Any, exit_code: int | None, expected: ExitActions
) -> None:
    assert exit_actions(CONDITIONS, outcome, exit_code) == expected


def test_without_exit_conditions_success_satisfies_and_failure_blocks() -> None:
    assert exit_actions(None, "exited", 0) == ExitActions("none", "satisfy")
    assert exit_actions(None, "exited", 1) == ExitActions("terminate", "block")
    assert exit_actions({}, "preprocessing_error", None) == ExitActions("terminate", "block")


def test_an_unlisted_failure_without_default_or_own_entry_uses_the_defaults() -> None:
    conditions = {"exitCodes": [{"code": 1, "exitOptions": {"jobAction": "none"}}]}
    assert exit_actions(conditions, "upload_error", 0) == ExitActions("terminate", "block")
