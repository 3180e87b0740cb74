"""The Celery task adapter: a dispatch goes straight to the agent runtime."""

from __future__ import annotations

from typing import Any

from celery import Celery

from nodeagent.agent import AgentRuntime
from nodeagent.messages import RUN_ATTEMPT_TASK


def register(app: Celery, runtime: AgentRuntime) -> None:
    """Register the run-attempt task on `app`, bound to `runtime`."""

    @app.task(name=RUN_ATTEMPT_TASK, ignore_result=True, acks_late=False)
    def run_attempt(dispatch: dict[str, Any]) -> dict[str, Any] | None:
        """Claim and run the dispatched attempt; the report sent, if any."""
        report = runtime.handle_dispatch(dispatch)
        return None if report is None else report.model_dump(mode="json")
