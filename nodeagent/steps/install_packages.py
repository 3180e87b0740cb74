"""InstallPackages: make sure the task's application packages are unpacked on the node."""

from __future__ import annotations

import logging
from typing import ClassVar

from nodeagent import apppackages
from nodeagent.errors import AttemptAbandoned
from nodeagent.messages import FailureCategory
from nodeagent.steps.base import TaskContext

log = logging.getLogger(__name__)


class InstallPackages:
    """Install each package the attempt references; one already on the node is reused, not fetched again."""

    name: ClassVar[str] = "InstallPackages"
    category: ClassVar[FailureCategory] = "usererror"

    def run(self, ctx: TaskContext) -> None:
        """Install the packages in order; a failure is a pre-processing error."""
        for package in ctx.spec.application_packages:
            if ctx.cancel.is_set():
                raise AttemptAbandoned(ctx.attempt_id)
            directory = apppackages.install(package, ctx.layout, ctx.deps.blob)
            log.debug("attempt %s: package %s ready in %s", ctx.attempt_id, package.application_id, directory)
