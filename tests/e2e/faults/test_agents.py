"""Faults of agents and task processes on a stack the test owns (scorecard S1, S2, S12, S13, S17).

Every test ends with the invariants of `tests.support.history`: each task completed, no two executions
of one task at once, no task process left; then the retry and requeue counts the fault calls for.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from celery import Celery

from batchyard.client import BatchClient
from nodeagent.messages import RUN_ATTEMPT_TASK, Dispatch, Offer, node_queue
from tests.support.faultstack import POOL_ID, FaultStack, fault_stack
from tests.support.history import (
    ProcessWatch,
    add_job,
    add_tasks,
    check_invariants,
    events_dir,
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

JOB = "faults"


def session_of(watch: ProcessWatch, task_id: str) -> int:
    """The session (= leader pid) of the task's only live execution, its exit timed by the watch from now on."""
    watch.sample()
    sessions = [session for (task, session) in watch.alive() if task == task_id]
    assert len(sessions) == 1, sessions
    return sessions[0]


def session_gone(watch: ProcessWatch, task_id: str, session: int) -> Callable[[], bool]:
    """A condition: no process of the task's session is left."""
    return lambda: (task_id, session) not in watch.alive()


def test_s1_agent_killed_mid_task_is_requeued_once(
    stack: FaultStack, client: BatchClient, events: Path, watch: ProcessWatch, marker: str
) -> None:
    stack.start_agent("f-1")
    stack.start_agent("f-2")
    add_job(client, JOB, POOL_ID)
    add_tasks(client, JOB, [task_body("t1", recorded_command(events, 8), marker)])
    wait_started(events, "t1", 1, 30)
    first = wait_state(client, JOB, "t1", "running", 10)["nodeInfo"]["nodeId"]
    session_of(watch, "t1")
    stack.kill_agent(first)
    # The launcher kills the task's process tree as soon as the agent is gone.
    wait_for(lambda: not watch.alive(), 5, "the task's processes to die with their agent")
    assert not list(events.glob("t1.*.end")), "the first execution finished before its agent was killed"
    tasks = wait_tasks(client, JOB, ["t1"], 60)
    checked = check_invariants(tasks, events, watch)
    info = execution_info(tasks["t1"])
    assert (info["requeueCount"], info["retryCount"], info["exitCode"], info["result"]) == (1, 0, 0, "success")
    assert tasks["t1"]["nodeInfo"]["nodeId"] != first
    assert (checked.started("t1"), checked.finished("t1")) == (2, 1)


def test_s2_killed_task_process_is_a_retried_exit_137(
    stack: FaultStack, client: BatchClient, events: Path, watch: ProcessWatch, marker: str
) -> None:
    stack.start_agent("f-1")
    add_job(client, JOB, POOL_ID)
    body = task_body("t1", recorded_command(events, 30), marker, constraints={"maxTaskRetryCount": 1})
    add_tasks(client, JOB, [body])
    for count in (1, 2):
        wait_started(events, "t1", count, 30)
        killed = session_of(watch, "t1")
        os.kill(killed, signal.SIGKILL)
        wait_for(session_gone(watch, "t1", killed), 10, "the killed command's group to be gone")
    tasks = wait_tasks(client, JOB, ["t1"], 30)
    checked = check_invariants(tasks, events, watch)
    info = execution_info(tasks["t1"])
    assert (info["retryCount"], info["requeueCount"], info["exitCode"], info["result"]) == (1, 0, 137, "failure")
    assert info["failureInfo"]["category"] == "usererror", info
    assert (checked.started("t1"), checked.finished("t1")) == (2, 0)


def publish(stack: FaultStack, dispatches: list[tuple[Dispatch, str]]) -> None:
    """Publish each dispatch to a node queue, as the controller does."""
    app = Celery("byfault", broker=stack.redis_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options={"global_keyprefix": "batchyard:"},
    )
    with app.connection_for_write() as connection:
        for dispatch, node_id in dispatches:
            kwargs = {"dispatch": dispatch.model_dump(mode="json")}
            queue = node_queue(node_id)
            app.send_task(RUN_ATTEMPT_TASK, kwargs=kwargs, queue=queue, ignore_result=True, connection=connection)


def offered_attempt(stack: FaultStack, job_id: str, task_id: str, timeout: float = 10.0) -> tuple[str, str]:
    """Wait until the task's current attempt is offered (read from the store); its id and node."""
    store = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    deadline = time.monotonic() + timeout
    try:
        while True:
            key = store.hget(f"batchyard:task:{job_id.lower()}:{task_id.lower()}", "attempt")
            attempt = store.hgetall(str(key)) if key else {}
            if attempt.get("state") == "offered":
                return str(key).rsplit(":", 1)[-1], attempt["node_id"]
            assert time.monotonic() < deadline, f"no offered attempt of {task_id}: {attempt}"
            time.sleep(0.1)
    finally:
        store.close()


def test_s12_an_offer_delivered_twice_and_to_both_nodes_runs_once(
    stack: FaultStack, client: BatchClient, events: Path, watch: ProcessWatch, marker: str
) -> None:
    stack.start_agent("f-1")
    stack.start_agent("f-2")
    agents = list(stack.agents.values())
    for agent in agents:
        stack.kill(agent, signal.SIGSTOP)
    try:
        add_job(client, JOB, POOL_ID)
        add_tasks(client, JOB, [task_body("t1", recorded_command(events, 2), marker)])
        attempt, owner = offered_attempt(stack, JOB, "t1")
        other = "f-2" if owner == "f-1" else "f-1"
        mine = Dispatch(node_id=owner, offers=[Offer(attempt_id=attempt, job_id=JOB, task_id="t1")])
        theirs = mine.model_copy(update={"node_id": other})
        publish(stack, [(mine, owner), (mine, owner), (mine, other), (theirs, other)])
    finally:
        for agent in agents:
            stack.kill(agent, signal.SIGCONT)
    tasks = wait_tasks(client, JOB, ["t1"], 30)
    publish(stack, [(mine, owner), (theirs, other)])
    refused = f"attempt {attempt}: claim refused"
    wait_for(lambda: stack.log_text(other).count(refused) == 2, 10, "the other node to refuse both claims")
    checked = check_invariants(tasks, events, watch)
    assert (checked.started("t1"), checked.finished("t1")) == (1, 1)
    info = execution_info(tasks["t1"])
    assert (info["retryCount"], info["requeueCount"], info["exitCode"]) == (0, 0, 0)
    assert tasks["t1"]["nodeInfo"]["nodeId"] == owner
    logs = {node: stack.log_text(node) for node in (owner, other)}
    assert f"attempt {attempt}: dispatched to node {owner}, not {other}; dropped" in logs[other]
    duplicates = logs[owner].count(refused) + logs[owner].count(f"attempt {attempt}: already running here")
    assert duplicates >= 2, logs[owner]


def test_s13_task_longer_than_the_visibility_timeout_runs_once(tmp_path: Path, marker: str) -> None:
    env = {"NODEAGENT_VISIBILITY_TIMEOUT_SECONDS": "3"}
    with fault_stack(tmp_path / "data", env) as stack, ProcessWatch(marker) as watch, stack.client() as client:
        events = events_dir(stack.layout.nodes_dir)
        stack.start_agent("f-1")
        stack.start_agent("f-2")
        add_job(client, JOB, POOL_ID)
        add_tasks(client, JOB, [task_body(f"t{i}", recorded_command(events, 15), marker) for i in range(3)])
        tasks = wait_tasks(client, JOB, ["t0", "t1", "t2"], 60)
        checked = check_invariants(tasks, events, watch)
        for task_id, task in tasks.items():
            info = execution_info(task)
            assert (checked.started(task_id), checked.finished(task_id)) == (1, 1), (task_id, info)
            assert (info["retryCount"], info["requeueCount"], info["exitCode"]) == (0, 0, 0), (task_id, info)


def test_s17_wall_clock_limit_kills_the_whole_tree(
    stack: FaultStack, client: BatchClient, events: Path, watch: ProcessWatch, marker: str
) -> None:
    stack.start_agent("f-1")
    add_job(client, JOB, POOL_ID)
    command = "/bin/sh -c 'sleep 1000 & sleep 1000'"
    add_tasks(client, JOB, [task_body("t1", command, marker, constraints={"maxWallClockTime": "PT3S"})])
    wait_state(client, JOB, "t1", "running", 30)
    wait_for(lambda: sum(len(pids) for pids in watch.alive().values()) == 3, 10, "sh and both sleeps to run")
    tasks = wait_tasks(client, JOB, ["t1"], 30)
    check_invariants(tasks, events, watch)
    info = execution_info(tasks["t1"])
    assert info["result"] == "failure", info
    assert info["failureInfo"]["code"] == "MaxWallClockTimeExceeded", info
    assert (info["retryCount"], info["requeueCount"]) == (0, 0)
    assert get_task(client, JOB, "t1")["state"] == "completed"
