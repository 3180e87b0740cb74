"""Agents that restart: node commands (reboot, leave) and an agent killed with a report not yet delivered.

A restarted agent must not run again what it finished: it replays its spooled reports, and an attempt
delivered again is claimed only if the controller still offers it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from batchyard.client import BatchClient
from nodeagent.layout import NodeLayout
from tests.support.faultstack import POOL_ID, FaultStack
from tests.support.history import (
    ProcessWatch,
    add_job,
    add_tasks,
    check_invariants,
    execution_info,
    recorded_command,
    task_body,
    wait_started,
    wait_tasks,
)
from tests.support.servers import wait_for

pytestmark = pytest.mark.e2e

JOB = "restarts"


@pytest.fixture
def stack_env() -> dict[str, str]:
    return {"CONTROLLER_LEASE_SECONDS": "20"}


def node(client: BatchClient, node_id: str) -> dict[str, str]:
    """The node as the API shows it."""
    response = client.get(f"/pools/{POOL_ID}/nodes/{node_id}")
    assert response.status_code == 200, response.text
    found: dict[str, str] = response.json()
    return found


def test_reboot_stops_the_attempt_and_restarts_the_agent_in_place(
    stack: FaultStack, client: BatchClient, events: Path, watch: ProcessWatch, marker: str
) -> None:
    pid = stack.start_agent("f-1")
    booted = node(client, "f-1")["lastBootTime"]
    add_job(client, JOB, POOL_ID)
    add_tasks(client, JOB, [task_body("t1", recorded_command(events, 6), marker)])
    wait_started(events, "t1", 1, 30)
    response = client.post(f"/pools/{POOL_ID}/nodes/f-1/reboot", {"nodeRebootOption": "requeue"})
    assert response.status_code == 202, response.text
    wait_for(lambda: node(client, "f-1")["lastBootTime"] != booted, 30, "the agent to boot again")
    tasks = wait_tasks(client, JOB, ["t1"], 60)
    checked = check_invariants(tasks, events, watch)
    assert (checked.started("t1"), checked.finished("t1")) == (2, 1)
    assert execution_info(tasks["t1"])["retryCount"] == 0
    agent = stack.agents["f-1"]
    assert agent.alive() and agent.pid == pid, "the agent restarts in the same process"
    log = stack.log_text("f-1")
    assert "the controller asks this agent to reboot" in log
    assert log.count("agent started, files at") == 2


def test_leave_stops_the_agent_with_exit_code_0(stack: FaultStack, client: BatchClient) -> None:
    stack.start_agent("f-1")
    stack.start_agent("f-2")
    response = client.post(f"/pools/{POOL_ID}/removenodes", {"nodeList": ["f-1"]})
    assert response.status_code == 202, response.text
    agent = stack.agents.pop("f-1")
    assert agent.process.wait(timeout=30) == 0
    assert "removed from its pool; exiting" in stack.log_text("f-1")
    assert stack.agents["f-2"].alive()


def test_agent_killed_before_its_report_got_through_replays_it_and_runs_nothing_again(
    stack: FaultStack, client: BatchClient, events: Path, watch: ProcessWatch, marker: str
) -> None:
    stack.start_agent("f-1")
    add_job(client, JOB, POOL_ID)
    add_tasks(client, JOB, [task_body("t1", recorded_command(events, 2), marker)])
    wait_started(events, "t1", 1, 30)
    stack.kill(stack.controller)
    wait_for(lambda: bool(list(events.glob("t1.*.end"))), 10, "the task to finish while the controller is down")
    spool = NodeLayout(stack.layout.node_root("f-1")).spool
    wait_for(lambda: bool(list(spool.glob("*.json"))), 10, "the report to be spooled")
    stack.kill_agent("f-1")
    stack.start_controller()
    stack.start_agent("f-1")
    tasks = wait_tasks(client, JOB, ["t1"], 30)
    checked = check_invariants(tasks, events, watch)
    assert (checked.started("t1"), checked.finished("t1")) == (1, 1)
    info = execution_info(tasks["t1"])
    assert (info["retryCount"], info["requeueCount"], info["exitCode"]) == (0, 0, 0)
    assert "replaying spooled report" in stack.log_text("f-1")
