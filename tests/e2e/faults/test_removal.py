"""S15: a node removed from its pool while it runs a task, with each node deallocation option.

`requeue` stops the task and runs it again elsewhere (requeueCount 1), `terminate` stops it and
completes it as failed (TaskEnded), `taskcompletion` and `retaineddata` let it finish first. In every
case the node takes no new task once the removal was asked for, leaves the pool, and its agent
exits 0; the invariants of `tests.support.history` hold at the end.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from batchyard.client import BatchClient
from tests.support.faultstack import POOL_ID, FaultStack
from tests.support.history import (
    ProcessWatch,
    add_job,
    add_tasks,
    check_invariants,
    execution_info,
    get_task,
    recorded_command,
    task_body,
    wait_started,
    wait_state,
    wait_tasks,
)
from tests.support.servers import wait_for

pytestmark = pytest.mark.e2e

JOB = "removal"

EXPECTED = {
    # option: (requeueCount, result, failure code, executions started, executions finished)
    "requeue": (1, "success", None, 2, 1),
    "terminate": (0, "failure", "TaskEnded", 1, 0),
    "taskcompletion": (0, "success", None, 1, 1),
    "retaineddata": (0, "success", None, 1, 1),
}


@pytest.mark.parametrize("option", list(EXPECTED))
def test_s15_node_removed_mid_task(
    stack: FaultStack, client: BatchClient, events: Path, watch: ProcessWatch, marker: str, option: str
) -> None:
    stack.start_agent("f-1", slots=1)
    stack.start_agent("f-2", slots=1)
    add_job(client, JOB, POOL_ID)
    add_tasks(client, JOB, [task_body("t1", recorded_command(events, 4), marker)])
    wait_started(events, "t1", 1, 30)
    removed = wait_state(client, JOB, "t1", "running", 10)["nodeInfo"]["nodeId"]
    kept = "f-2" if removed == "f-1" else "f-1"
    # When the node running t1 is removed, and another task arrives while it leaves
    body = {"nodeList": [removed], "nodeDeallocationOption": option}
    response = client.post(f"/pools/{POOL_ID}/removenodes", body)
    assert response.status_code == 202, response.text
    add_tasks(client, JOB, [task_body("t2", recorded_command(events, 0.2), marker)])
    # Then the agent leaves with exit code 0 and the node is gone from the pool
    agent = stack.agents.pop(removed)
    assert agent.process.wait(timeout=60) == 0
    wait_for(lambda: stack.node_state(removed) == "absent", 30, f"node {removed} to leave the pool")
    # And t1 ended as the option says, t2 ran on the node that stayed, each exactly as often as expected
    tasks = wait_tasks(client, JOB, ["t1", "t2"], 60)
    checked = check_invariants(tasks, events, watch)
    requeues, result, failure, started, finished = EXPECTED[option]
    info = execution_info(tasks["t1"])
    assert (info["requeueCount"], info["retryCount"], info["result"]) == (requeues, 0, result), info
    assert (info.get("failureInfo") or {}).get("code") == failure, info
    assert (checked.started("t1"), checked.finished("t1")) == (started, finished)
    assert get_task(client, JOB, "t2")["nodeInfo"]["nodeId"] == kept
    assert (checked.started("t2"), checked.finished("t2")) == (1, 1)
