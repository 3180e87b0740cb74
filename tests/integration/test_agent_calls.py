"""The calls node agents make, against the controller's services and a real redis-server.

Offers go out one message per node; a node claims several in one call; a report call
answered by the scheduler's leader carries the attempts that fill the slots it freed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from batchyard.services import pool_body
from controller.app import build_context
from controller.context import Context
from controller.dispatch import Dispatcher
from controller.domain.clock import iso, new_etag, now
from controller.domain.ids import key_of
from controller.scheduler import Scheduler
from controller.schemas.jobs import JobCreate
from controller.schemas.pools import PoolCreate
from controller.schemas.tasks import TaskCreate
from controller.services import agents
from controller.services.jobs import create_job
from controller.services.pools import create_pool
from controller.services.tasks import add_tasks
from controller.store.transitions import Heartbeat
from nodeagent.messages import AttemptReport, AttemptSpec, Dispatch, ReportBatch, TaskReport
from tests.support.controller import close_context, settings_for

POOL = "calls"
NODE = "calls-1"


class RecordingDispatcher(Dispatcher):
    """Keeps what the scheduler publishes instead of sending it to the broker."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        super().__init__(dispatcher.app)
        self.sent: list[Dispatch] = []

    async def publish(self, dispatches: list[Dispatch]) -> None:
        self.sent += dispatches


@pytest.fixture
async def ctx(redis_server: Any) -> AsyncIterator[Context]:
    built = build_context(settings_for(redis_server.url, "calls"))
    context = dataclasses.replace(built, dispatcher=RecordingDispatcher(built.dispatcher))
    yield context
    await close_context(context)
    context.dispatcher.close()


async def two_slots_and_three_tasks(ctx: Context) -> Scheduler:
    """A pool with one 2-slot node, a job with three queued tasks, and this controller leading the scheduler."""
    await create_pool(ctx, PoolCreate.model_validate({**pool_body(1, 2), "id": POOL}))
    beat = Heartbeat(NODE, key_of(POOL), POOL, 2, "http://127.0.0.1:1", "127.0.0.1", "1", iso(now()), [])
    now_ms = int(time.time() * 1000)
    await ctx.transitions.heartbeat(beat, iso(now()), now_ms, now_ms + 60_000, new_etag())
    await create_job(ctx, JobCreate.model_validate({"id": "j", "poolInfo": {"poolId": POOL}}))
    tasks = [TaskCreate.model_validate({"id": f"t{i}", "commandLine": "/bin/true"}) for i in range(3)]
    assert all(result.error is None for result in await add_tasks(ctx, "j", tasks))
    scheduler = Scheduler(ctx)
    assert await scheduler._lead()
    return scheduler


def finished(node_id: str = NODE) -> TaskReport:
    return TaskReport(node_id=node_id, outcome="exited", exit_code=0, end_time=datetime.now(UTC))


def reported(spec: AttemptSpec, *, refill: bool = True, node_id: str = NODE) -> ReportBatch:
    """A report call with the successful end of one attempt."""
    return ReportBatch(reports=[AttemptReport(attempt_id=spec.attempt_id, report=finished(node_id))], refill=refill)


async def both_slots_running(ctx: Context) -> tuple[Context, Scheduler, list[AttemptSpec]]:
    """Two of three tasks claimed by the node, the third queued; the context refills through the scheduler."""
    scheduler = await two_slots_and_three_tasks(ctx)
    ctx = dataclasses.replace(ctx, refill=scheduler.refill)
    await scheduler.place_all()
    offered = [offer.attempt_id for offer in ctx.dispatcher.sent[0].offers]  # type: ignore[attr-defined]
    return ctx, scheduler, (await agents.claim_all(ctx, NODE, offered)).specs


async def task_states(ctx: Context) -> dict[str, str]:
    return {f"t{i}": str(await ctx.redis.hget(ctx.keys.task(key_of("j"), f"t{i}"), "state")) for i in range(3)}


async def test_a_pass_offers_one_message_per_node_and_the_node_claims_them_in_one_call(ctx: Context) -> None:
    scheduler = await two_slots_and_three_tasks(ctx)
    await scheduler.place_all()
    sent = ctx.dispatcher.sent  # type: ignore[attr-defined]
    assert [(dispatch.node_id, len(dispatch.offers)) for dispatch in sent] == [(NODE, 2)]
    offered = [offer.attempt_id for offer in sent[0].offers]
    answer = await agents.claim_all(ctx, NODE, [*offered, "unknown"])
    assert sorted(spec.attempt_id for spec in answer.specs) == sorted(offered)
    assert answer.refused == ["unknown"]
    assert {spec.task_id for spec in answer.specs} == {"t0", "t1"}
    assert await task_states(ctx) == {"t0": "running", "t1": "running", "t2": "active"}
    # A second claim of the same attempts is refused: they are running already
    assert (await agents.claim_all(ctx, "calls-2", offered)).refused == offered


async def test_a_report_answered_by_the_leader_carries_the_next_attempt(ctx: Context) -> None:
    # Given both slots running
    ctx, _, specs = await both_slots_running(ctx)
    # When one attempt's report asks for a refill
    answer = await agents.report_all(ctx, NODE, reported(specs[0]))
    # Then it is accepted and the answer holds the third task, already claimed for the node
    assert answer.answers[specs[0].attempt_id].accepted
    assert [spec.task_id for spec in answer.specs] == ["t2"]
    assert answer.specs[0].node_id == NODE
    assert (await task_states(ctx))["t2"] == "running"
    assert await ctx.redis.hget(ctx.keys.node(NODE), "used") == "2"


async def test_reports_without_refill_or_from_another_node(ctx: Context) -> None:
    ctx, scheduler, (first, second) = await both_slots_running(ctx)
    # A report naming another node is refused, and the attempt keeps running
    refused = await agents.report_all(ctx, NODE, reported(first, node_id="calls-2"))
    assert not refused.answers[first.attempt_id].accepted and refused.specs == []
    # A stopping agent's report (no refill) frees the slot without taking the next task
    batch = reported(second, refill=False)
    answer = await agents.report_all(ctx, NODE, batch)
    assert answer.answers[second.attempt_id].accepted and answer.specs == []
    assert (await task_states(ctx))["t2"] == "active"
    # A report of an attempt already reported is refused, not applied twice
    again = await agents.report_all(ctx, NODE, batch)
    assert not again.answers[second.attempt_id].accepted
    # A controller that does not lead the scheduler answers with no attempts
    scheduler.leading = False
    assert (await agents.report_all(ctx, NODE, reported(first))).specs == []


async def wakes(ctx: Context) -> int:
    """How many scheduler wake-ups wait, cleared."""
    key = ctx.keys.scheduler_wake()
    count = int(await ctx.redis.llen(key))
    await ctx.redis.delete(key)
    return count


async def test_a_report_wakes_the_scheduler_only_when_its_node_keeps_free_slots(ctx: Context) -> None:
    # Given both slots running and one task queued
    ctx, scheduler, (first, second) = await both_slots_running(ctx)
    await wakes(ctx)
    # When a report's refill fills the slot it freed, no other node could use a pass
    third = (await agents.report_all(ctx, NODE, reported(first))).specs
    assert len(third) == 1 and await wakes(ctx) == 0
    # When the queue is empty, the freed slot stays free: the scheduler is woken
    assert (await agents.report_all(ctx, NODE, reported(second))).specs == []
    assert await wakes(ctx) == 1
    # And a controller that does not lead wakes the leader whatever it frees
    scheduler.leading = False
    await agents.report_all(ctx, NODE, reported(third[0]))
    assert await wakes(ctx) == 1


async def test_a_removed_node_gets_no_attempts_from_a_late_report(ctx: Context) -> None:
    # Given a node whose report was refilled (the leader knows its pool), then finished everything
    ctx, _, (first, second) = await both_slots_running(ctx)
    (third,) = (await agents.report_all(ctx, NODE, reported(first))).specs
    for spec in (second, third):
        assert (await agents.report_all(ctx, NODE, reported(spec, refill=False))).answers[spec.attempt_id].accepted
    # And was removed from its pool, after which another task was queued
    assert await ctx.transitions.remove_node(NODE, key_of(POOL))
    added = await add_tasks(ctx, "j", [TaskCreate.model_validate({"id": "t3", "commandLine": "/bin/true"})])
    assert added[0].error is None
    # When a late copy of an old report arrives asking for a refill
    answer = await agents.report_all(ctx, NODE, reported(first))
    # Then it is refused and carries no attempt: the queued task waits for a node of the pool
    assert not answer.answers[first.attempt_id].accepted and answer.specs == []
    assert await ctx.redis.hget(ctx.keys.task(key_of("j"), "t3"), "state") == "active"
