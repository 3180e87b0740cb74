"""Faults of the shared services while tasks run: the controller killed (S4), Redis restarted (S5) or hung (S6).

The stack's processes are the test's own children (`tests.support.faultstack`), started with the argv
and environment `batchyard up` uses, so each can be killed and started again the same way.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from batchyard import procs
from tests.support.faultstack import POOL_ID, FaultStack, fault_stack
from tests.support.history import (
    ProcessWatch,
    add_job,
    add_tasks,
    check_invariants,
    events_dir,
    execution_info,
    recorded_command,
    task_body,
    wait_started,
    wait_tasks,
)

pytestmark = pytest.mark.e2e

JOB = "services"

CONTROLLER_OUTAGE_SECONDS = 12.0
"""S4: longer than the 8 s lease of FAST_ENV."""

REDIS_STOP_SECONDS = 20.0
"""S6: longer than the heartbeats' 2 s timeout and the broker's socket timeouts."""

REDIS_REPLY_TIMEOUT_SECONDS = 3.0
"""S6: how long the controller waits for a reply from the hung store before answering 503."""


def start_agents(stack: FaultStack, count: int = 2) -> None:
    """Start agents f-1 .. f-<count>."""
    for index in range(1, count + 1):
        stack.start_agent(f"f-{index}")


def test_s4_controller_killed_longer_than_the_lease_reruns_nothing_that_finished(
    tmp_path: Path, marker: str, watch: ProcessWatch
) -> None:
    """Needs the controller to give running leases a grace period when it starts (see the module docstring)."""
    with fault_stack(tmp_path / "data") as stack, stack.client() as client:
        events = events_dir(stack.layout.nodes_dir)
        start_agents(stack)
        add_job(client, JOB, POOL_ID)
        short = [task_body(f"s{i}", recorded_command(events, 3), marker) for i in range(3)]
        add_tasks(client, JOB, [*short, task_body("long", recorded_command(events, 15), marker)])
        for task_id in ("s0", "s1", "s2", "long"):
            wait_started(events, task_id, 1, 30)
        stack.kill(stack.controller)
        time.sleep(CONTROLLER_OUTAGE_SECONDS)
        stack.start_controller()
        tasks = wait_tasks(client, JOB, ["s0", "s1", "s2", "long"], 90)
        checked = check_invariants(tasks, events, watch)
        for task_id in ("s0", "s1", "s2"):
            info = execution_info(tasks[task_id])
            assert (checked.started(task_id), checked.finished(task_id)) == (1, 1), f"{task_id} ran again"
            assert (info["retryCount"], info["requeueCount"], info["exitCode"]) == (0, 0, 0), task_id
        # The long task was still running when its agent fenced itself: it ran again elsewhere or later.
        info = execution_info(tasks["long"])
        assert (checked.started("long"), checked.finished("long")) == (2, 1)
        assert (info["retryCount"], info["requeueCount"], info["exitCode"]) == (0, 1, 0)
        logs = stack.log_text("f-1") + stack.log_text("f-2")
        assert "fencing window" in logs and "which will not be reported" in logs


def test_s5_redis_restarted_with_queued_and_running_work_completes_everything_once(
    tmp_path: Path, marker: str, watch: ProcessWatch
) -> None:
    with fault_stack(tmp_path / "data") as stack, stack.client() as client:
        events = events_dir(stack.layout.nodes_dir)
        start_agents(stack)
        add_job(client, JOB, POOL_ID)
        task_ids = [f"t{i}" for i in range(10)]
        add_tasks(client, JOB, [task_body(task_id, recorded_command(events, 2), marker) for task_id in task_ids])
        wait_started(events, "t0", 1, 30)
        assert stack.redis is not None
        procs.stop_all([stack.redis], 10.0)
        # While the store is down the API answers 503 ServerBusy, which the SDKs retry, never a 500.
        down = client.get(f"/jobs/{JOB}")
        assert (down.status_code, down.json()["code"], down.headers.get("Retry-After")) == (503, "ServerBusy", "2")
        stack.start_redis()
        assert client.get(f"/jobs/{JOB}").status_code == 200
        tasks = wait_tasks(client, JOB, task_ids, 90)
        checked = check_invariants(tasks, events, watch)
        for task_id in task_ids:
            assert (checked.started(task_id), checked.finished(task_id)) == (1, 1), task_id
            info = execution_info(tasks[task_id])
            assert (info["retryCount"], info["requeueCount"], info["exitCode"]) == (0, 0, 0), task_id
        log = stack.log_text("controller")
        assert "the state store is unavailable" in log and "unhandled error" not in log


def test_s6_hung_redis_resumes_consuming_within_60_s_of_sigcont(
    tmp_path: Path, marker: str, watch: ProcessWatch
) -> None:
    env = {
        "CONTROLLER_LEASE_SECONDS": "40",
        "CONTROLLER_NODE_TIMEOUT_SECONDS": "40",
        "NODEAGENT_FENCE_SECONDS": "30",
        "CONTROLLER_REDIS_REPLY_TIMEOUT_SECONDS": str(REDIS_REPLY_TIMEOUT_SECONDS),
    }
    with fault_stack(tmp_path / "data", env) as stack, stack.client() as client:
        events = events_dir(stack.layout.nodes_dir)
        start_agents(stack)
        add_job(client, JOB, POOL_ID)
        add_tasks(client, JOB, [task_body(f"a{i}", recorded_command(events, 8), marker) for i in range(2)])
        wait_started(events, "a0", 1, 30)
        wait_started(events, "a1", 1, 30)
        stack.kill(stack.redis, signal.SIGSTOP)
        try:
            stopped = time.monotonic()
            # A hung store makes API calls answer 503 ServerBusy once its replies are overdue, not hang.
            hung = client.get(f"/jobs/{JOB}")
            assert (hung.status_code, hung.json()["code"], hung.headers.get("Retry-After")) == (503, "ServerBusy", "2")
            time.sleep(max(0.0, REDIS_STOP_SECONDS - (time.monotonic() - stopped)))
        finally:
            stack.kill(stack.redis, signal.SIGCONT)
        resumed = time.monotonic()
        assert client.get(f"/jobs/{JOB}").status_code == 200
        later = [f"b{i}" for i in range(4)]
        add_tasks(client, JOB, [task_body(task_id, recorded_command(events, 1), marker) for task_id in later])
        tasks = wait_tasks(client, JOB, ["a0", "a1", *later], 60)
        assert time.monotonic() - resumed < 60
        checked = check_invariants(tasks, events, watch)
        for task_id, task in tasks.items():
            assert (checked.started(task_id), checked.finished(task_id)) == (1, 1), task_id
            info = execution_info(task)
            assert (info["retryCount"], info["requeueCount"], info["exitCode"]) == (0, 0, 0), task_id
        log = stack.log_text("controller")
        assert "the state store is unavailable" in log and "unhandled error" not in log
