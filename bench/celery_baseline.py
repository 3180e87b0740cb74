"""Batchyard vs raw Celery: the same `/bin/true` tasks through each, in one run, as JSON.

(a) Raw Celery + Redis: a private redis-server (configured like `batchyard up`'s),
2 worker processes (thread pool, concurrency 4, late acks, prefetch 1, JSON), a task
that runs `/bin/true` with subprocess and pushes its (sent, started, ended) times to
a Redis list; all tasks sent over one producer. Total = first send to last end.

(b) Raw Celery doing, in the same task, what a node agent does around every command
(`isolation.py`: a task directory owned by the user nobody, the command started as nobody
in a session of its own inside fresh v1 cgroups, its usage read, the cgroups removed), the
same workers and Redis otherwise. It tells how much of the gap between (a) and (c) is the
isolation every Batchyard task gets, and how much is the service around it.

(c) Batchyard: a fresh `batchyard up` (2 agents x 4 slots), the tasks added with
addtaskcollection (100 per call). Total = first add to the last task's endTime;
latency = each task's creationTime to its executionInfo.endTime. Completion is
watched through the job's counters in the stack's Redis (listing 10,000 tasks
over the API while they run would load the controller being measured).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import isolation
import rawcelery
from common import (
    add_all,
    completed_tasks,
    free_port,
    parse_time,
    percentile,
    redis_server,
    seconds_between,
    stack,
    wait_completed,
)

from batchyard.client import BatchClient

JOB_ID = "bench"


def latency_summary(latencies: list[float]) -> dict[str, float]:
    """p50 and p99 in seconds."""
    return {
        "latency_p50_seconds": round(statistics.median(latencies), 3),
        "latency_p99_seconds": round(percentile(latencies, 0.99), 3),
    }


def raw_celery(
    scratch: Path, total: int, workers: int, concurrency: int, task_root: Path | None = None
) -> dict[str, Any]:
    """A baseline: private Redis, `workers` Celery processes, `total` tasks; isolated ones under `task_root`."""
    isolated = task_root is not None
    with redis_server(scratch) as url:
        children = rawcelery.start_workers(url, workers, concurrency, scratch, task_root)
        try:
            times = rawcelery.send_and_wait(url, total, isolated=isolated)
        finally:
            rawcelery.stop_workers(children)
    first_sent = min(sent for sent, _, _ in times)
    elapsed = max(ended for _, _, ended in times) - first_sent
    return {
        "tasks": total,
        "total_seconds": round(elapsed, 3),
        "tasks_per_second": round(total / elapsed, 1),
        **latency_summary([ended - sent for sent, _, ended in times]),
        "workers": workers,
        "concurrency_per_worker": concurrency,
        **({"cgroups": isolation.cgroups_usable(), "task_user": isolation.TASK_USER} if isolated else {}),
    }


def batchyard(scratch: Path, total: int, agents: int, slots: int) -> dict[str, Any]:
    """The same tasks through a fresh `batchyard up`."""
    redis_port = free_port()
    with stack(scratch, agents, slots, redis_port) as client:
        first_add, tasks = measure_stack(client, redis_port, total)
    ends = [parse_time(task["executionInfo"]["endTime"]).timestamp() for task in tasks]
    elapsed = max(ends) - first_add
    return {
        "tasks": total,
        "failed": sum(task["executionInfo"].get("exitCode") != 0 for task in tasks),
        "total_seconds": round(elapsed, 3),
        "tasks_per_second": round(total / elapsed, 1),
        **latency_summary([seconds_between(task["creationTime"], task["executionInfo"]["endTime"]) for task in tasks]),
        "agents": agents,
        "slots_per_agent": slots,
    }


def measure_stack(client: BatchClient, redis_port: int, total: int) -> tuple[float, list[dict[str, Any]]]:
    """Add the tasks, wait until all completed; the first add's wall-clock time and the completed tasks."""
    client.post("/jobs", {"id": JOB_ID, "poolInfo": {"poolId": "local"}}).raise_for_status()
    first_add = time.time()
    add_all(client, JOB_ID, total)
    wait_completed(redis_port, JOB_ID, total, timeout=max(600.0, total / 5))
    return first_add, completed_tasks(client, JOB_ID)


def main() -> int:
    """Run the three and print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=2, help="Celery workers and Batchyard agents")
    parser.add_argument("--slots", type=int, default=4, help="worker concurrency and agent task slots")
    args = parser.parse_args()
    # The isolated tasks' directories are deleted last: deleting many files just before a run slows its
    # file creation on some file systems (see README.md).
    with tempfile.TemporaryDirectory(prefix="batchyard-bench-") as scratch, isolation.task_root() as task_root:
        raw = raw_celery(Path(scratch) / "raw", args.tasks, args.agents, args.slots)
        isolated = None
        if task_root is not None:
            isolated = raw_celery(Path(scratch) / "isolated", args.tasks, args.agents, args.slots, task_root)
        ours = batchyard(Path(scratch) / "stack", args.tasks, args.agents, args.slots)
    ratio = ours["tasks_per_second"] / raw["tasks_per_second"]
    result = {
        "raw_celery": raw,
        "raw_celery_isolated": isolated or "not run: giving task directories to the user nobody needs root",
        "batchyard": ours,
        "throughput_ratio_batchyard_over_raw": round(ratio, 3),
        "throughput_ratio_batchyard_over_isolated": (
            round(ours["tasks_per_second"] / isolated["tasks_per_second"], 3) if isolated else None
        ),
        "target_ratio": 1.0,
        "target_met": ratio >= 1.0,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
