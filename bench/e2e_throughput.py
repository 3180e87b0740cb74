"""1,000 `/bin/true` tasks through a fresh `batchyard up`: throughput, add-to-completion latency, the CPU
each task cost the stack's processes (controller, agents, launchers with the commands they ran, Redis) and
the Redis commands, round trips and script runs each task cost, as JSON."""

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

from common import (
    add_all,
    completed_tasks,
    cpu_ms_per_task,
    free_port,
    per_task,
    percentile,
    redis_work,
    seconds_between,
    stack,
    stack_cpu_seconds,
)

from batchyard.client import BatchClient


def measure(client: BatchClient, redis_port: int, total: int) -> dict[str, Any]:
    """Add the tasks, wait for all of them, and summarise."""
    job_id = "bench"
    client.post("/jobs", {"id": job_id, "poolInfo": {"poolId": "local"}}).raise_for_status()
    cpu_before, redis_before = stack_cpu_seconds(), redis_work(redis_port)
    started = time.monotonic()
    add_all(client, job_id, total)
    added = time.monotonic()
    # The job's task counts are one cheap call; listing the tasks while they run would load the controller.
    while client.get(f"/jobs/{job_id}/taskcounts").json()["taskCounts"]["completed"] < total:
        time.sleep(0.25)
    elapsed = time.monotonic() - started
    cpu = cpu_ms_per_task(cpu_before, stack_cpu_seconds(), total)
    redis_per_task = per_task(redis_before, redis_work(redis_port), total)
    done = completed_tasks(client, job_id)
    latencies = [seconds_between(task["creationTime"], task["executionInfo"]["endTime"]) for task in done]
    failed = sum(task["executionInfo"].get("exitCode") != 0 for task in done)
    return {
        "tasks": total,
        "failed": failed,
        "add_seconds": round(added - started, 3),
        "total_seconds": round(elapsed, 3),
        "tasks_per_second": round(total / elapsed, 1),
        "latency_p50_seconds": round(statistics.median(latencies), 3),
        "latency_p95_seconds": round(percentile(latencies, 0.95), 3),
        "cpu_ms_per_task": cpu,
        "redis_per_task": redis_per_task,
    }


def main() -> int:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--slots", type=int, default=4)
    args = parser.parse_args()
    redis_port = free_port()
    with (
        tempfile.TemporaryDirectory(prefix="batchyard-bench-") as scratch,
        stack(Path(scratch), args.agents, args.slots, redis_port) as client,
    ):
        result = measure(client, redis_port, args.tasks)
    result.update({"agents": args.agents, "slots_per_agent": args.slots, "cpus": os.cpu_count()})
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
