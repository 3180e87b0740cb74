"""The Celery task adapter: a dispatch goes straight to the agent runtime."""

from __future__ import annotations

from typing import Any

from celery import Celery

from nodeagent.agent import AgentRuntime
from nodeagent.messages import RUN_ATTEMPT_TASK


def register(app: Celery, runtime: AgentRuntime) -> None:
    """Register the run-attempt task on `app`, bound to `runtime`."""

    @app.task(name=RUN_ATTEMPT_TASK, ignore_result=True, acks_late=False)
    def run_attempt(dispatch: dict[str, Any]) -> list[str]:
        """Claim the dispatched attempts and start those claimed on the agent's slots; their ids."""
        return runtime.handle_dispatch(dispatch)
