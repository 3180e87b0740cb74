"""Time limits the reconciler enforces: the task lifetime and the job's maxWallClockTime (real redis-server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controller.app import build_context
from controller.context import Context
from controller.schemas.jobs import JobCreate
from controller.schemas.tasks import TaskCreate
from controller.services import jobs, tasks
from tests.support.controller import close_context, settings_for


@pytest.fixture
async def ctx(redis_server: Any) -> AsyncIterator[Context]:
    context = build_context(settings_for(redis_server.url, "life", task_lifetime_seconds=0.2))
    yield context
    await close_context(context)


async def test_tasks_past_their_lifetime_are_terminated(ctx: Context) -> None:
    # Given a job whose two tasks were added (the lifetime is 0.2 s in this test)
    await jobs.create_job(ctx, JobCreate.model_validate({"id": "old", "poolInfo": {"poolId": "nowhere"}}))
    bodies = [TaskCreate.model_validate({"id": f"t{i}", "commandLine": "/bin/true"}) for i in range(2)]
    await tasks.add_tasks(ctx, "old", bodies)
    # When the lifetime has passed and the reconciler runs
    await asyncio.sleep(0.3)
    await tasks.expire_tasks(ctx)
    # Then both completed as failed with a clear code, and the job counts agree
    for task_id in ("t0", "t1"):
        record = await tasks.get_task(ctx, "old", task_id)
        assert (record["state"], record["result"]) == ("completed", "failure")
        assert "TaskLifetimeExceeded" in record["failure"]
    job = await jobs.get_job(ctx, "old")
    assert (job["n_active"], job["n_failed"]) == ("0", "2")


async def test_a_job_past_its_wall_clock_is_terminated(ctx: Context) -> None:
    body = {"id": "walled", "poolInfo": {"poolId": "nowhere"}, "constraints": {"maxWallClockTime": "PT0.1S"}}
    await jobs.create_job(ctx, JobCreate.model_validate(body))
    await asyncio.sleep(0.2)
    await jobs.expire_jobs(ctx)
    job = await jobs.get_job(ctx, "walled")
    assert (job["state"], job["reason"]) == ("completed", "MaxWallClockTimeExpiry")
