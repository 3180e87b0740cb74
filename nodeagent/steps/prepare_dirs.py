"""PrepareDirs: create the task directory tree and empty output logs."""

from __future__ import annotations

from typing import ClassVar

from nodeagent.errors import StepError
from nodeagent.messages import FailureCategory
from nodeagent.steps.base import TaskContext


class PrepareDirs:
    """Create `<task dir>/wd` and fresh stdout/stderr/upload logs for this attempt."""

    name: ClassVar[str] = "PrepareDirs"
    category: ClassVar[FailureCategory] = "servererror"

    def run(self, ctx: TaskContext) -> None:
        """Create the directories (idempotent) and truncate the attempt's log files."""
        dirs = ctx.dirs
        try:
            dirs.wd.mkdir(parents=True, exist_ok=True)
            for path in (dirs.stdout, dirs.stderr, dirs.upload_out, dirs.upload_err):
                path.write_bytes(b"")
        except OSError as exc:
            raise StepError(
                "ResourceDirectoryCreateFailed", f"cannot create the task directory: {exc}", category=self.category
            ) from exc
