"""RunJobPreparation: the job's preparation task must have run on this node before the attempt's command."""

from __future__ import annotations

from typing import ClassVar

from nodeagent.errors import AttemptAbandoned, StepError
from nodeagent.messages import FailureCategory
from nodeagent.steps.base import TaskContext

FAILED_CODE = "JobPreparationTaskFailed"
"""Failure code of an attempt whose node could not prepare its job; the controller queues it again."""


class RunJobPreparation:
    """Run (or wait for) the job's preparation task here; fail the attempt when it needed success and failed."""

    name: ClassVar[str] = "RunJobPreparation"
    category: ClassVar[FailureCategory] = "usererror"

    def run(self, ctx: TaskContext) -> None:
        """Prepare the job on this node once; with waitForSuccess the attempt goes on only after success."""
        preparation = ctx.spec.job_preparation
        if preparation is None or ctx.deps.job_tasks is None:
            return
        ready = ctx.deps.job_tasks.prepare(preparation, ctx.cancel)
        if ctx.cancel.is_set():
            raise AttemptAbandoned(ctx.attempt_id)
        if not ready:
            raise StepError(
                FAILED_CODE,
                f"the preparation task of job {ctx.spec.job_id} failed on node {ctx.spec.node_id}",
                category=self.category,
                outcome="job_preparation_failed",
            )
