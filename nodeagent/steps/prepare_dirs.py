"""PrepareDirs: resolve the attempt's OS identity, then create its task directory owned by that identity.

The task directory and `wd` belong to the run-as user with mode 0700, so no
other task user can read them; stdout.txt, stderr.txt and the upload logs are
created fresh by the agent, 0600 and owned by the user, before anything runs
(the upload logs only for a task with output files, as in Azure Batch).
A task directory an earlier attempt left under another identity is handed over
whole. The job directories above it stay the agent's (0755).
"""

from __future__ import annotations

import logging
from typing import ClassVar

from nodeagent.errors import StepError
from nodeagent.identity import RunAs
from nodeagent.layout import TaskDirs
from nodeagent.messages import FailureCategory
from nodeagent.ownership import fresh_file, give_tree, own_dir
from nodeagent.steps.base import TaskContext

log = logging.getLogger(__name__)

TASK_DIR_MODE = 0o700
"""Mode of the task directory and its working directory."""

LOG_FILE_MODE = 0o600
"""Mode of stdout.txt, stderr.txt and the upload logs."""


def prepare_task_dirs(dirs: TaskDirs, run_as: RunAs, upload_logs: bool = True) -> None:
    """Create the task directory tree for `run_as` (idempotent; the working directory's content is kept).

    Without `upload_logs`, upload logs an earlier attempt left are removed instead of created.
    """
    dirs.task_dir.parent.mkdir(parents=True, exist_ok=True)
    origin = own_dir(dirs.task_dir, run_as, TASK_DIR_MODE)
    if origin == "taken":
        give_tree(dirs.task_dir, run_as)
    own_dir(dirs.wd, run_as, TASK_DIR_MODE)
    for path in (dirs.stdout, dirs.stderr):
        fresh_file(path, run_as, LOG_FILE_MODE)
    for path in (dirs.upload_out, dirs.upload_err):
        if upload_logs:
            fresh_file(path, run_as, LOG_FILE_MODE)
        elif origin != "made":
            path.unlink(missing_ok=True)


class PrepareDirs:
    """Resolve the run-as identity, then create `<task dir>/wd` and fresh logs owned by it."""

    name: ClassVar[str] = "PrepareDirs"
    category: ClassVar[FailureCategory] = "servererror"

    def run(self, ctx: TaskContext) -> None:
        """Resolve the identity (creating its account) and prepare the directories."""
        ctx.run_as = ctx.deps.identities.for_attempt(ctx.spec, ctx.dirs.task_dir)
        log.debug("attempt %s: runs as %s (uid %s)", ctx.attempt_id, ctx.run_as.username, ctx.run_as.uid)
        try:
            prepare_task_dirs(ctx.dirs, ctx.run_as, upload_logs=bool(ctx.spec.output_files))
        except OSError as exc:
            raise StepError(
                "ResourceDirectoryCreateFailed", f"cannot create the task directory: {exc}", category=self.category
            ) from exc
