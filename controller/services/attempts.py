"""Taking live attempts away from a node or a job, as a node operation or a job disable asks.

| option | running attempt | offered attempt |
|---|---|---|
| `requeue` | stopped by its node, then the task is queued again (requeueCount + 1) | queued again |
| `terminate` | stopped; the task completes as failed (`TaskEnded`) | queued again |
| `wait`, `taskcompletion`, `retaineddata` | runs to its end | queued again |

A running attempt is requeued only after its node confirmed the stop (`Transitions.stopping`), so a task
never runs in two places at once.
"""

from __future__ import annotations

import json

from controller.context import Context
from controller.domain.clock import iso, new_etag, now
from controller.domain.lifecycle import task_ended_failure

LETS_TASKS_FINISH = ("wait", "taskcompletion", "retaineddata")
"""Options under which running attempts finish."""


async def stop_attempts(ctx: Context, attempt_keys: list[str], option: str, reason: str) -> int:
    """Apply `option` to each attempt; how many changed. `reason` goes into the failureInfo of `terminate`."""
    failure = json.dumps(task_ended_failure(reason).model_dump(mode="json"))
    changed = 0
    for attempt_key in attempt_keys:
        if option == "terminate":
            outcome = await ctx.transitions.stop_attempt(attempt_key, "any", "fail", iso(now()), new_etag(), failure)
        elif option == "requeue" and await ctx.transitions.stopping(attempt_key):
            outcome = "stopping"
        else:
            outcome = await ctx.transitions.stop_attempt(attempt_key, "offered", "release", iso(now()), new_etag())
        changed += outcome is not None
    if changed:
        await ctx.wake_scheduler()
    return changed
