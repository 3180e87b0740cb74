"""The agent's error hierarchy: every failure a step can raise is classified here."""

from __future__ import annotations

from nodeagent.messages import AttemptOutcome, FailureCategory, FailureDetail, FailureInfo


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """The agent's settings are missing or invalid."""


class ControllerUnavailable(AgentError):
    """The controller could not be reached or kept answering with errors."""


class AttemptAbandoned(AgentError):
    """The attempt was taken away (stale or agent shutdown): stop without uploading or reporting."""


class StepError(AgentError):
    """A step failed; carries the Azure failure code, category and attempt outcome."""

    outcome: AttemptOutcome = "preprocessing_error"
    category: FailureCategory = "usererror"

    def __init__(
        self,
        code: str,
        message: str,
        *,
        category: FailureCategory | None = None,
        outcome: AttemptOutcome | None = None,
        recoverable: bool = False,
        details: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.recoverable = recoverable
        self.details = dict(details or {})
        if category is not None:
            self.category = category
        if outcome is not None:
            self.outcome = outcome

    def failure_info(self) -> FailureInfo:
        """This error as an Azure `failureInfo`."""
        details = [FailureDetail(name=name, value=value) for name, value in self.details.items()]
        return FailureInfo(category=self.category, code=self.code, message=self.message, details=details)


class DownloadError(StepError):
    """A resource file could not be downloaded or written (a pre-processing error)."""


class IdentityError(StepError):
    """The task's user identity cannot be mapped to an OS account on this node (a pre-processing error)."""


class PackageError(StepError):
    """An application package could not be downloaded or unpacked (a pre-processing error)."""


class ProcessStartError(StepError):
    """The command line could not be started (a pre-processing error)."""


class CommandFailed(StepError):
    """The command exited with a non-zero exit code."""

    outcome: AttemptOutcome = "exited"


class WallClockExceeded(StepError):
    """The command ran past the task's maxWallClockTime and was killed."""

    outcome: AttemptOutcome = "timed_out"


class UploadError(StepError):
    """An output file could not be uploaded (a file upload error)."""

    outcome: AttemptOutcome = "upload_error"


class ProcessLost(StepError):
    """A started command's end can no longer be known (the launcher that started it exited); it was killed."""

    category: FailureCategory = "servererror"
