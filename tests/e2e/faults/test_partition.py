"""A node cut off by a network partition, longer (S7) and shorter (S8) than the lease.

The partitioned agent runs in its own network namespace joined to the host by a veth pair; the
controller and Redis listen on the host end, and the partition takes that end down. Tasks run
`released_command`s: each execution waits until the test lets its task go, so the test decides
which executions end during the partition.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from batchyard.client import BatchClient
from tests.support.faultstack import POOL_ID, FaultStack, fault_stack
from tests.support.history import (
    ProcessWatch,
    add_job,
    add_tasks,
    check_invariants,
    events_dir,
    execution_info,
    release,
    released_command,
    task_body,
    wait_started,
    wait_tasks,
)
from tests.support.netns import Namespace, namespace
from tests.support.servers import wait_for

pytestmark = pytest.mark.e2e

JOB = "partition"

LEASE_SECONDS = 8.0
"""S7's lease (FAST_ENV): the partition lasts twice as long."""

SHORT_LEASE_ENV = {"CONTROLLER_LEASE_SECONDS": "15", "CONTROLLER_NODE_TIMEOUT_SECONDS": "15"}
"""S8's lease: the 4 s partition plus a heartbeat timeout stays well inside its 13 s fencing window."""

LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


@pytest.fixture
def ns() -> Iterator[Namespace]:
    with namespace("p") as created:
        yield created


def start_partitioned(stack: FaultStack, ns: Namespace) -> None:
    """Start agent p-1 inside the namespace."""
    stack.start_agent("p-1", netns=ns.name, address=ns.ns_ip)


def logged_at(line: str) -> float:
    """The time of a log line."""
    found = LOG_TIME.match(line)
    assert found, line
    return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def line_with(text: str, log: str) -> str:
    """The first line of `log` containing `text`."""
    for line in log.splitlines():
        if text in line:
            return line
    raise AssertionError(f"no log line contains {text!r}")


def fenced_attempts(log: str) -> tuple[float, list[str]]:
    """When the agent fenced itself and the attempts it killed."""
    line = line_with("which will not be reported", log)
    return logged_at(line), re.findall(r"'([0-9a-f]{32})'", line)


def test_s7_partition_longer_than_the_lease_requeues_fences_and_refuses_the_late_report(
    tmp_path: Path, ns: Namespace, marker: str
) -> None:
    with (
        fault_stack(tmp_path / "data", host=ns.host_ip) as stack,
        stack.client() as client,
        ProcessWatch(marker) as watch,
    ):
        events = events_dir(stack.layout.nodes_dir)
        start_partitioned(stack, ns)
        add_job(client, JOB, POOL_ID)
        add_tasks(client, JOB, [task_body(task_id, released_command(events), marker) for task_id in ("a", "b")])
        wait_started(events, "a", 1, 30)
        wait_started(events, "b", 1, 30)
        stack.start_agent("p-2")
        cut = time.monotonic()
        ns.partition()
        time.sleep(2)
        release(events, "b")  # b's first execution ends inside the partition: its report can only come late
        time.sleep(max(0.0, 2 * LEASE_SECONDS - (time.monotonic() - cut)))
        ns.heal()
        wait_started(events, "a", 2, 30)
        release(events, "a")
        tasks = wait_tasks(client, JOB, ["a", "b"], 60)
        late = "controller refused the report: The attempt is no longer current"
        wait_for(lambda: late in stack.log_text("p-1"), 30, "p-1 to deliver b's late report")
        checked = check_invariants(tasks, events, watch)
        check_s7(stack, client, tasks, checked.started("a"), checked.finished("a"), checked.finished("b"))


def check_s7(stack: FaultStack, client: BatchClient, tasks: dict[str, dict[str, object]], *counts: int) -> None:
    """Both tasks requeued once and finished on p-2; p-1 fenced a before its lease expired."""
    assert counts == (2, 1, 2), "a started twice and finished once; b finished on both nodes"
    for task in tasks.values():
        info = execution_info(task)  # type: ignore[arg-type]
        assert (info["requeueCount"], info["retryCount"], info["exitCode"]) == (1, 0, 0), info
        assert task["nodeInfo"]["nodeId"] == "p-2"  # type: ignore[index]
    agent_log, controller_log = stack.log_text("p-1"), stack.log_text("controller")
    fenced_at, fenced = fenced_attempts(agent_log)
    assert len(fenced) == 1, fenced
    expired_at = logged_at(line_with(f"lease of attempt {fenced[0]} expired", controller_log))
    assert fenced_at < expired_at, "the agent fenced its attempt before the controller requeued it"


def test_s8_partition_shorter_than_the_lease_changes_nothing(tmp_path: Path, ns: Namespace, marker: str) -> None:
    with (
        fault_stack(tmp_path / "data", SHORT_LEASE_ENV, host=ns.host_ip) as stack,
        stack.client() as client,
        ProcessWatch(marker) as watch,
    ):
        events = events_dir(stack.layout.nodes_dir)
        start_partitioned(stack, ns)
        add_job(client, JOB, POOL_ID)
        add_tasks(client, JOB, [task_body("a", released_command(events), marker)])
        wait_started(events, "a", 1, 30)
        stack.start_agent("p-2")
        ns.partition()
        time.sleep(4)
        ns.heal()
        time.sleep(3)
        release(events, "a")
        tasks = wait_tasks(client, JOB, ["a"], 30)
        checked = check_invariants(tasks, events, watch)
        assert (checked.started("a"), checked.finished("a")) == (1, 1)
        info = execution_info(tasks["a"])
        assert (info["requeueCount"], info["retryCount"], info["exitCode"]) == (0, 0, 0)
        assert tasks["a"]["nodeInfo"]["nodeId"] == "p-1"
        assert "fencing window" not in stack.log_text("p-1")
