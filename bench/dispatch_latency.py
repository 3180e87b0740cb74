"""From a slot freeing to the next attempt starting, on one slot, as JSON.

Batchyard: a fresh `batchyard up` with 1 agent x 1 slot and a queue of N `/bin/true`
tasks. For each consecutive pair (by startTime), the gap from task k's
executionInfo.endTime (the controller applied its report, freeing the slot) to task
k+1's startTime (the controller granted the agent's claim) -- both controller
timestamps. That gap is the wake-up, the scheduler pass, the offer, the Celery
delivery and the claim. Pairs whose second task was added after the first ended (the
queue was empty, not the dispatcher slow) are left out and counted.

Baseline in the same run: a raw Celery worker (thread pool, concurrency 1, late acks,
prefetch 1) on a private Redis, the gap between one task's end and the next task's
start, both taken inside the worker.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import rawcelery
from common import add_all, completed_tasks, free_port, parse_time, percentile, redis_server, stack, wait_completed

from batchyard.client import BatchClient

JOB_ID = "bench"
TARGET_P50_MS = 20.0


def summary(gaps_ms: list[float]) -> dict[str, float]:
    """p50 and p95 in milliseconds."""
    return {"p50": round(statistics.median(gaps_ms), 2), "p95": round(percentile(gaps_ms, 0.95), 2)}


def raw_celery(scratch: Path, total: int) -> dict[str, Any]:
    """Gaps between consecutive tasks on one Celery worker with concurrency 1."""
    with redis_server(scratch) as url:
        workers = rawcelery.start_workers(url, 1, 1, scratch)
        try:
            times = rawcelery.send_and_wait(url, total)
        finally:
            rawcelery.stop_workers(workers)
    ordered = sorted(times, key=lambda triple: triple[1])
    gaps = [(ordered[k + 1][1] - ordered[k][2]) * 1000 for k in range(len(ordered) - 1)]
    return {"tasks": total, "gap_ms": summary(gaps)}


def batchyard(scratch: Path, total: int) -> dict[str, Any]:
    """Gaps between consecutive attempts on a 1 agent x 1 slot stack."""
    redis_port = free_port()
    with stack(scratch, 1, 1, redis_port) as client:
        tasks = run_queue(client, redis_port, total)
    ordered = sorted(tasks, key=lambda task: task["executionInfo"]["startTime"])
    gaps, empty_queue = [], 0
    for done, following in zip(ordered, ordered[1:], strict=False):
        ended = parse_time(done["executionInfo"]["endTime"])
        if parse_time(following["creationTime"]) > ended:
            empty_queue += 1
            continue
        gaps.append((parse_time(following["executionInfo"]["startTime"]) - ended).total_seconds() * 1000)
    return {
        "tasks": total,
        "failed": sum(task["executionInfo"].get("exitCode") != 0 for task in tasks),
        "pairs_measured": len(gaps),
        "pairs_skipped_queue_empty": empty_queue,
        "gap_ms": summary(gaps),
    }


def run_queue(client: BatchClient, redis_port: int, total: int) -> list[dict[str, Any]]:
    """Queue `total` tasks and wait until all of them completed."""
    client.post("/jobs", {"id": JOB_ID, "poolInfo": {"poolId": "local"}}).raise_for_status()
    add_all(client, JOB_ID, total)
    wait_completed(redis_port, JOB_ID, total)
    return completed_tasks(client, JOB_ID)


def main() -> int:
    """Run both and print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="batchyard-bench-") as scratch:
        raw = raw_celery(Path(scratch) / "raw", args.tasks)
        ours = batchyard(Path(scratch) / "stack", args.tasks)
    p50 = ours["gap_ms"]["p50"]
    result = {
        "batchyard": ours,
        "raw_celery_concurrency_1": raw,
        "target_p50_ms": TARGET_P50_MS,
        "target_met": p50 <= TARGET_P50_MS,
        "p50_over_target_ms": round(max(0.0, p50 - TARGET_P50_MS), 2),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
