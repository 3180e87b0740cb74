"""What task dependencies cost: the same `/bin/true` tasks with and without dependencies, in one run, as JSON.

A fresh `batchyard up` (2 agents x 4 slots) runs three jobs one after the other:
(a) `plain`: N tasks without dependencies, before and again after (b), so that a warm-up or a
    noisy minute does not decide the comparison alone;
(b) `chain` (usesTaskDependencies): the same N tasks in L layers with integer ids; each task of layer
k > 0 depends, through one `taskIdRanges` entry, on the block of B tasks of layer k-1 at its position
(so N * B edges in all).
For each: the time from the first add to the last task's endTime. Target: (b) at most 10 % slower than
the mean of the two runs of (a).
Completion is watched through the job's counters in the stack's Redis, as in `celery_baseline.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from common import COLLECTION, completed_tasks, free_port, parse_time, stack, wait_completed

from batchyard.client import BatchClient


def chain_task(number: int, layer_size: int, block: int) -> dict[str, Any]:
    """Task `number` (1-based): in layer 0 free, else waiting for its block of the previous layer."""
    task: dict[str, Any] = {"id": str(number), "commandLine": "/bin/true"}
    layer, position = divmod(number - 1, layer_size)
    if layer > 0:
        first = (layer - 1) * layer_size + position - position % block + 1
        last = min(first + block - 1, layer * layer_size)
        task["dependsOn"] = {"taskIdRanges": [{"start": first, "end": last}]}
    return task


def edges(task: dict[str, Any]) -> int:
    """How many parents a task's ranges name."""
    ranges = task.get("dependsOn", {}).get("taskIdRanges", [])
    return sum(id_range["end"] - id_range["start"] + 1 for id_range in ranges)


def run_job(client: BatchClient, redis_port: int, job: dict[str, Any], tasks: list[dict[str, Any]]) -> float:
    """Add the job and its tasks; seconds from the first add to the last task's end."""
    client.post("/jobs", {**job, "poolInfo": {"poolId": "local"}}).raise_for_status()
    first_add = time.time()
    for start in range(0, len(tasks), COLLECTION):
        response = client.post(f"/jobs/{job['id']}/addtaskcollection", {"value": tasks[start : start + COLLECTION]})
        response.raise_for_status()
        assert all(item["status"] == "success" for item in response.json()["value"]), response.text
    wait_completed(redis_port, job["id"], len(tasks), timeout=max(600.0, len(tasks) / 5))
    ends = [parse_time(task["executionInfo"]["endTime"]).timestamp() for task in completed_tasks(client, job["id"])]
    return max(ends) - first_add


def main() -> int:
    """Run both jobs and print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--layers", type=int, default=100)
    parser.add_argument("--block", type=int, default=10, help="parents of each task in the previous layer")
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--slots", type=int, default=4)
    args = parser.parse_args()
    layer_size = args.tasks // args.layers
    total = layer_size * args.layers
    plain = [{"id": str(number), "commandLine": "/bin/true"} for number in range(1, total + 1)]
    chain = [chain_task(number, layer_size, args.block) for number in range(1, total + 1)]
    redis_port = free_port()
    with (
        tempfile.TemporaryDirectory(prefix="batchyard-bench-") as scratch,
        stack(Path(scratch), args.agents, args.slots, redis_port) as client,
    ):
        before = run_job(client, redis_port, {"id": "plain"}, plain)
        chain_seconds = run_job(client, redis_port, {"id": "chain", "usesTaskDependencies": True}, chain)
        after = run_job(client, redis_port, {"id": "plain-again"}, plain)
    plain_seconds = (before + after) / 2
    overhead = chain_seconds / plain_seconds - 1
    result = {
        "tasks": total,
        "layers": args.layers,
        "edges": sum(edges(task) for task in chain),
        "plain_seconds": [round(before, 3), round(after, 3)],
        "dependencies_seconds": round(chain_seconds, 3),
        "overhead": round(overhead, 3),
        "target_overhead": 0.10,
        "target_met": overhead <= 0.10,
        "agents": args.agents,
        "slots_per_agent": args.slots,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
