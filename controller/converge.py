"""Pools follow their targets: nodes are added and removed through the node provider, leaving nodes are
removed once idle, pending reboots are sent, resizes time out, deleted pools go away. Run by the leader."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from controller.context import Context
from controller.domain.clock import iso, new_etag, now
from controller.render import Record
from controller.services.nodes import leave_pool
from controller.store import reads

log = logging.getLogger(__name__)


async def converge(ctx: Context) -> None:
    """One pass over every pool."""
    for pool_key in await reads.members(ctx.wire, ctx.keys.pools()):
        pool = await reads.record(ctx.wire, ctx.keys.pool(pool_key))
        if pool:
            await converge_pool(ctx, pool)


async def converge_pool(ctx: Context, pool: Record) -> None:
    """Bring one pool's nodes towards its target, and finish what its leaving nodes started."""
    node_ids = await reads.members(ctx.wire, ctx.keys.pool_nodes(pool["key"]))
    nodes = [node for node in await reads.records(ctx.wire, [ctx.keys.node(n) for n in node_ids]) if node]
    await _finish_leaving(ctx, pool, [node for node in nodes if node["state"] == "leavingpool"])
    await _send_pending_reboots(ctx, [node for node in nodes if node.get("pending") == "reboot"])
    if pool["state"] == "deleting":
        await _delete_pool(ctx, pool, nodes)
        return
    staying = {node["id"] for node in nodes if node["state"] != "leavingpool"}
    provided = set(await reads.set_members(ctx.wire, ctx.keys.pool_provided(pool["key"])))
    for node_id in sorted(provided):
        await asyncio.to_thread(ctx.provider.ensure, pool, node_id)
    leaving = {node["id"] for node in nodes if node["state"] == "leavingpool"}
    current = (staying | provided) - leaving
    target = target_nodes(pool)
    if len(current) < target:
        await _grow(ctx, pool, current, target - len(current))
    elif len(current) > target:
        await _shrink(ctx, pool, nodes, provided, len(current) - target)
    await _settle(ctx, pool, len(current) == target)


def target_nodes(pool: Record) -> int:
    """The pool's targetDedicatedNodes (a resize overrides the value it was created with)."""
    if pool.get("target"):
        return int(pool["target"])
    return int(json.loads(pool["spec"]).get("targetDedicatedNodes") or 0)


async def _grow(ctx: Context, pool: Record, current: set[str], count: int) -> None:
    for node_id in _free_ids(pool["id"], current, count):
        await ctx.redis.srem(ctx.keys.removed_nodes(), node_id)
        if not await asyncio.to_thread(ctx.provider.start, pool, node_id):
            return
        await ctx.redis.sadd(ctx.keys.pool_provided(pool["key"]), node_id)


def _free_ids(pool_id: str, taken: set[str], count: int) -> list[str]:
    """The lowest unused `<pool>-<n>` node ids."""
    ids: list[str] = []
    index = 1
    while len(ids) < count:
        candidate = f"{pool_id}-{index}"
        if candidate not in taken:
            ids.append(candidate)
        index += 1
    return ids


async def _shrink(ctx: Context, pool: Record, nodes: list[Record], provided: set[str], count: int) -> None:
    """Remove provider-made nodes, idle ones first and those running a job manager last.

    Nodes that joined by themselves are never chosen.
    """
    candidates = [node for node in nodes if node["id"] in provided and node["state"] != "leavingpool"]
    managers = {node["id"] for node in candidates if await _runs_job_manager(ctx, node["id"])}
    candidates.sort(key=lambda node: (node["id"] in managers, int(node.get("used", "0")), node["id"]))
    option = pool.get("resize_option") or "requeue"
    for node in candidates[:count]:
        await leave_pool(ctx, node["id"], option)
    unregistered = sorted(provided - {node["id"] for node in nodes})
    for node_id in unregistered[: max(0, count - len(candidates))]:
        await asyncio.to_thread(ctx.provider.stop, node_id)
        await ctx.redis.srem(ctx.keys.pool_provided(pool["key"]), node_id)


async def _runs_job_manager(ctx: Context, node_id: str) -> bool:
    """True when one of the node's attempts is of a job manager task."""
    for attempt_key in await reads.set_members(ctx.wire, ctx.keys.node_attempts(node_id)):
        task_key = await ctx.redis.hget(attempt_key, "task")
        if task_key and await ctx.redis.hget(task_key, "jm") == "1":
            return True
    return False


async def _finish_leaving(ctx: Context, pool: Record, leaving: list[Record]) -> None:
    for node in leaving:
        if int(node.get("used", "0")) > 0 or await ctx.redis.scard(ctx.keys.node_attempts(node["id"])):
            continue
        await asyncio.to_thread(ctx.provider.stop, node["id"])
        if await ctx.transitions.remove_node(node["id"], pool["key"]):
            await ctx.redis.srem(ctx.keys.pool_provided(pool["key"]), node["id"])
            log.info("node %s removed from pool %s", node["id"], pool["id"])


async def _send_pending_reboots(ctx: Context, nodes: list[Record]) -> None:
    for node in nodes:
        if not await ctx.redis.scard(ctx.keys.node_attempts(node["id"])):
            await ctx.transitions.update_if(
                ctx.keys.node(node["id"]), "pending", "reboot", {"pending": "", "command": "reboot"}
            )


async def _delete_pool(ctx: Context, pool: Record, nodes: list[Record]) -> None:
    for node in nodes:
        if node["state"] != "leavingpool":
            await leave_pool(ctx, node["id"], "requeue")
    for node_id in await reads.set_members(ctx.wire, ctx.keys.pool_provided(pool["key"])):
        if node_id not in {node["id"] for node in nodes}:
            await asyncio.to_thread(ctx.provider.stop, node_id)
            await ctx.redis.srem(ctx.keys.pool_provided(pool["key"]), node_id)
    if not nodes and not await ctx.redis.scard(ctx.keys.pool_provided(pool["key"])):
        await ctx.redis.unlink(ctx.keys.pool(pool["key"]), ctx.keys.pool_nodes(pool["key"]))
        await ctx.redis.zrem(ctx.keys.pools(), pool["key"])
        log.info("pool %s deleted", pool["id"])


async def _settle(ctx: Context, pool: Record, at_target: bool) -> None:
    """A resizing pool becomes steady at its target, or when its resize times out (with a resize error)."""
    if pool.get("alloc_state", "steady") == "steady":
        return
    stamp = iso(now())
    if at_target or pool.get("alloc_state") == "stopping":
        fields = {"alloc_state": "steady", "alloc_stt": stamp, "etag": new_etag()}
        await ctx.transitions.update_if(ctx.keys.pool(pool["key"]), "alloc_state", "resizing,stopping", fields)
        return
    if time.time() * 1000 < float(pool.get("resize_deadline") or "inf"):
        return
    error = {"code": "AllocationTimedOut", "message": "The pool did not reach its target within the resize timeout"}
    fields = {"alloc_state": "steady", "alloc_stt": stamp, "resize_errors": json.dumps([error]), "etag": new_etag()}
    await ctx.transitions.update_if(ctx.keys.pool(pool["key"]), "alloc_state", "resizing", fields)
