"""The scheduler's placements per second with 100,000 queued tasks and 50 nodes, as JSON.

Against a private redis-server, the state is made through the controller's own code:
a pool and a job (the services, which run create.lua), 50 nodes registered by the
heartbeat transition (8 slots each), and 100,000 `/bin/true` tasks queued with the
tasks service (add_tasks.lua) in batches of 1,000. Then the real
`Scheduler.place_all()` runs pass after pass -- reading free slots, the queue and
the tasks, choosing nodes and running offer.lua per node -- with a dispatcher that
counts instead of publishing to Celery. Between passes (outside the timed part)
every node heartbeats again with 8 more slots than it uses, so each pass has 400
free slots. Placements/s = attempts offered / time inside `place_all()`.

A second figure is the pure `controller.domain.placement.place` rate for the same
shape (400 wants over 50 nodes x 8 free slots), and for one call over all 100,000.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import percentile, redis_server

from batchyard.services import pool_body
from controller.app import build_context
from controller.context import Context
from controller.dispatch import Dispatcher
from controller.domain.clock import iso, new_etag, now
from controller.domain.ids import key_of
from controller.domain.placement import Want, place
from controller.scheduler import Scheduler
from controller.schemas.jobs import JobCreate
from controller.schemas.pools import PoolCreate
from controller.schemas.tasks import TaskCreate
from controller.services.jobs import create_job
from controller.services.pools import create_pool
from controller.services.tasks import add_tasks
from controller.settings import ControllerSettings
from controller.store.transitions import Heartbeat
from nodeagent.messages import Dispatch

POOL_ID = "bench"
JOB_ID = "bench"
ADD_BATCH = 1000
TARGET_PER_SECOND = 5000.0


class CountingDispatcher(Dispatcher):
    """Counts the offers the scheduler would publish; publishes nothing."""

    published = 0

    async def publish(self, dispatches: list[Dispatch]) -> None:
        """Count instead of sending to the broker."""
        self.published += sum(len(dispatch.offers) for dispatch in dispatches)


def context(redis_url: str) -> tuple[Context, CountingDispatcher]:
    """The controller's own context for `redis_url`, with the counting dispatcher in place of Celery."""
    settings = ControllerSettings(
        account_key=base64.b64encode(os.urandom(32)).decode(), node_secret="x", redis_url=redis_url
    )
    built = build_context(settings)
    counting = CountingDispatcher(built.dispatcher.app)
    return dataclasses.replace(built, dispatcher=counting), counting


async def heartbeat_all(ctx: Context, nodes: list[str], free_each: int) -> None:
    """Each node reports in with `free_each` more slots than it has in use (and a fresh `seen`)."""
    for node_id in nodes:
        used = int(await ctx.redis.hget(ctx.keys.node(node_id), "used") or 0)
        beat = Heartbeat(node_id, key_of(POOL_ID), POOL_ID, used + free_each, "http://127.0.0.1:1", "127.0.0.1",
                         "bench", iso(now()), [])  # fmt: skip
        now_ms = int(time.time() * 1000)
        await ctx.transitions.heartbeat(beat, iso(now()), now_ms, now_ms + 60_000, new_etag())


async def build_state(ctx: Context, nodes: list[str], slots: int, tasks: int) -> float:
    """Pool, nodes, job and queued tasks; returns the seconds adding the tasks took."""
    await create_pool(ctx, PoolCreate.model_validate({**pool_body(len(nodes), slots), "id": POOL_ID}))
    await heartbeat_all(ctx, nodes, slots)
    await create_job(ctx, JobCreate.model_validate({"id": JOB_ID, "poolInfo": {"poolId": POOL_ID}}))
    started = time.perf_counter()
    for start in range(0, tasks, ADD_BATCH):
        bodies = [
            TaskCreate.model_validate({"id": f"t{i:06d}", "commandLine": "/bin/true"})
            for i in range(start, min(tasks, start + ADD_BATCH))
        ]
        results = await add_tasks(ctx, JOB_ID, bodies)
        assert all(result.error is None for result in results), results[0].error
    return time.perf_counter() - started


async def scheduler_rate(redis_url: str, node_count: int, slots: int, tasks: int) -> dict[str, Any]:
    """Placement passes of the real scheduler until the queue is empty."""
    ctx, counting = context(redis_url)
    nodes = [f"node-{index:03d}" for index in range(node_count)]
    try:
        add_seconds = await build_state(ctx, nodes, slots, tasks)
        scheduler = Scheduler(ctx)
        passes: list[float] = []
        while counting.published < tasks:
            before = counting.published
            started = time.perf_counter()
            await scheduler.place_all()
            passes.append(time.perf_counter() - started)
            if counting.published == before:
                raise SystemExit(f"a placement pass placed nothing after {before} of {tasks}")
            await heartbeat_all(ctx, nodes, slots)
    finally:
        await ctx.http.aclose()
        await ctx.redis.aclose()
        await ctx.wire.aclose()
        ctx.dispatcher.close()
    rate = counting.published / sum(passes)
    return {
        "queued_tasks": tasks,
        "nodes": node_count,
        "slots_per_node": slots,
        "passes": len(passes),
        "placed": counting.published,
        "pass_ms": {
            "p50": round(statistics.median(passes) * 1000, 2),
            "p95": round(percentile(passes, 0.95) * 1000, 2),
        },
        "placements_per_second": round(rate, 1),
        "add_tasks_per_second": round(tasks / add_seconds, 1),
        "target_per_second": TARGET_PER_SECOND,
        "target_met": rate >= TARGET_PER_SECOND,
    }


def pure_rate(node_count: int, slots: int, tasks: int) -> dict[str, Any]:
    """`place()` alone: the per-pass shape repeated over all tasks, and one call over all of them."""
    names = [f"node-{index:03d}" for index in range(node_count)]
    wants = [Want(f"t{i:06d}", 1) for i in range(tasks)]
    per_pass = node_count * slots
    placed = 0
    started = time.perf_counter()
    for start in range(0, tasks, per_pass):
        placed += len(place(wants[start : start + per_pass], dict.fromkeys(names, slots))[0])
    passes_seconds = time.perf_counter() - started
    started = time.perf_counter()
    everything = len(place(wants, dict.fromkeys(names, -(-tasks // node_count)))[0])
    single_seconds = time.perf_counter() - started
    return {
        "per_pass_shape_placements_per_second": round(placed / passes_seconds, 1),
        "one_call_all_tasks_placements_per_second": round(everything / single_seconds, 1),
    }


def main() -> int:
    """Build the state, run the passes, print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--slots", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="batchyard-bench-") as scratch, redis_server(Path(scratch)) as url:
        scheduler = asyncio.run(scheduler_rate(url, args.nodes, args.slots, args.tasks))
    result = {
        "scheduler": scheduler,
        "pure_place": pure_rate(args.nodes, args.slots, args.tasks),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
