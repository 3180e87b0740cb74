"""Repairs the scheduler runs each pass: expired leases, unclaimed offers, silent nodes."""

from __future__ import annotations

import logging
import time

from controller.context import Context
from controller.domain.clock import iso, new_etag, now
from controller.services import autopools, jobschedules
from controller.services.jobs import expire_jobs
from controller.services.jobtasks import drive_releases
from controller.services.tasks import expire_tasks
from controller.store import reads
from nodeagent.messages import Dispatch, Offer

log = logging.getLogger(__name__)

BATCH = 500


def _now_ms() -> int:
    return int(time.time() * 1000)


async def reconcile(ctx: Context) -> None:
    """Run every repair once."""
    await expire_leases(ctx)
    await repeat_offers(ctx)
    await mark_silent_nodes(ctx)
    await expire_jobs(ctx)
    await expire_tasks(ctx)
    await drive_releases(ctx)
    await jobschedules.run_schedules(ctx)
    await autopools.retire(ctx)


async def expire_leases(ctx: Context) -> None:
    """Running (or stopping) attempts whose lease ran out go back to the queue with requeueCount + 1."""
    expired = await reads.due(ctx.wire, ctx.keys.leases(), _now_ms(), BATCH)
    for attempt_key in expired:
        if await ctx.transitions.stop_attempt(attempt_key, "running,stopping", "requeue", iso(now()), new_etag()):
            log.warning("lease of attempt %s expired; its task is queued again", ctx.keys.attempt_id_of(attempt_key))
    if expired:
        await ctx.wake_scheduler()


async def repeat_offers(ctx: Context) -> None:
    """Offers nobody claimed in time are sent again, or withdrawn when their node went silent."""
    cutoff = _now_ms() - int(ctx.settings.dispatch_timeout_seconds * 1000)
    old = await reads.due(ctx.wire, ctx.keys.offers(), cutoff, BATCH)
    resend: list[Dispatch] = []
    for attempt_key in old:
        attempt = await reads.record(ctx.wire, attempt_key)
        node = await reads.record(ctx.wire, ctx.keys.node(attempt.get("node_id", ""))) if attempt else {}
        if not attempt or node.get("state") not in ("idle", "running"):
            await ctx.transitions.stop_attempt(attempt_key, "offered", "release", iso(now()), new_etag())
            continue
        ((job_id, task_id),) = await reads.fields(ctx.wire, [attempt["task"]], "job", "id")
        offer = Offer(attempt_id=attempt["id"], job_id=job_id or "", task_id=task_id or "")
        resend.append(Dispatch(node_id=attempt["node_id"], offers=[offer]))
        await ctx.redis.zadd(ctx.keys.offers(), {attempt_key: _now_ms()}, xx=True)
    if resend:
        log.info("offering %d unclaimed attempts again", len(resend))
        await ctx.dispatcher.publish(resend)


async def mark_silent_nodes(ctx: Context) -> None:
    """Nodes not heard from within the node timeout become `unknown`."""
    cutoff = _now_ms() - int(ctx.settings.node_timeout_seconds * 1000)
    for pool_key in await reads.members(ctx.wire, ctx.keys.pools()):
        for node_id in await reads.members(ctx.wire, ctx.keys.pool_nodes(pool_key)):
            if await ctx.transitions.node_silent(node_id, cutoff, iso(now()), new_etag()):
                log.warning("node %s is silent; marked unknown", node_id)
