"""Node operations: scheduling on and off, reboot, removal, and what happens to the tasks running there."""

from __future__ import annotations

import logging

from controller.context import Context
from controller.domain.clock import iso, new_etag, now
from controller.errors import Conflict, NotFound
from controller.render import Record
from controller.services.attempts import LETS_TASKS_FINISH, stop_attempts
from controller.services.pools import get_pool, resize_pool
from controller.services.records import load
from controller.store import reads

log = logging.getLogger(__name__)

DEALLOCATION_OPTIONS = ("requeue", "terminate", "taskcompletion", "retaineddata")
OPERABLE_STATES = "idle,running,offline,starting,waitingforstarttask,starttaskfailed,unknown,unusable"
"""States in which a node accepts reboot, scheduling changes and removal."""


async def pool_node(ctx: Context, pool_id: str, node_id: str) -> tuple[Record, Record]:
    """The pool and one of its nodes; 404 PoolNotFound / NodeNotFound."""
    pool = await get_pool(ctx, pool_id)
    node = await load(ctx.wire, ctx.keys.node(node_id))
    if node is None or node.get("pool") != pool["key"]:
        raise NotFound(f"The specified node does not exist: {node_id}", code="NodeNotFound")
    return pool, node


async def evict(ctx: Context, node_id: str, option: str) -> int:
    """Deal with the node's attempts as `option` says (`controller.services.attempts`)."""
    attempts = await reads.set_members(ctx.wire, ctx.keys.node_attempts(node_id))
    return await stop_attempts(ctx, attempts, option, "its node was taken out of service")


async def _update(ctx: Context, node_id: str, expected: str, fields: dict[str, str]) -> None:
    result = await ctx.transitions.update_if(ctx.keys.node(node_id), "state", expected, {**fields, "etag": new_etag()})
    if result[0] == "missing":
        raise NotFound(f"The specified node does not exist: {node_id}", code="NodeNotFound")
    if result[0] == "state":
        raise Conflict(f"The operation is not valid on a node in state {result[1]}", code="OperationNotValidOnNode")


async def disable_scheduling(ctx: Context, pool_id: str, node_id: str, option: str) -> None:
    """Stop placing tasks on the node; its current tasks are handled per `option`."""
    _, node = await pool_node(ctx, pool_id, node_id)
    if node.get("scheduling") == "disabled":
        raise Conflict("Scheduling is already disabled on the node", code="NodeAlreadyInTargetSchedulingState")
    await _update(ctx, node_id, OPERABLE_STATES, {"scheduling": "disabled", "stt": iso(now())})
    await evict(ctx, node_id, option)


async def enable_scheduling(ctx: Context, pool_id: str, node_id: str) -> None:
    """Place tasks on the node again."""
    _, node = await pool_node(ctx, pool_id, node_id)
    if node.get("scheduling", "enabled") == "enabled":
        raise Conflict("Scheduling is already enabled on the node", code="NodeAlreadyInTargetSchedulingState")
    await _update(ctx, node_id, OPERABLE_STATES, {"scheduling": "enabled", "stt": iso(now())})
    await ctx.wake_scheduler()


async def reboot(ctx: Context, pool_id: str, node_id: str, option: str) -> None:
    """Restart the node's agent; with `taskcompletion` once its running tasks finished."""
    await pool_node(ctx, pool_id, node_id)
    fields = {"state": "rebooting", "stt": iso(now())}
    fields["pending"] = "reboot" if option in LETS_TASKS_FINISH else ""
    if option not in LETS_TASKS_FINISH:
        fields["command"] = "reboot"
    await _update(ctx, node_id, "idle,running,starttaskfailed,unusable,unknown,offline", fields)
    await evict(ctx, node_id, option)


async def leave_pool(ctx: Context, node_id: str, option: str) -> None:
    """Mark a node as leaving its pool; it is removed once nothing of it runs."""
    fields = {"state": "leavingpool", "stt": iso(now()), "scheduling": "disabled"}
    if option not in LETS_TASKS_FINISH:
        fields["command"] = "leave"
    else:
        fields["pending"] = "leave"
    result = await ctx.transitions.update_if(ctx.keys.node(node_id), "state", "*", {**fields, "etag": new_etag()})
    if result[0] == "ok":
        await evict(ctx, node_id, option)
        log.info("node %s leaves its pool (%s)", node_id, option)


async def remove_nodes(ctx: Context, pool_id: str, node_ids: list[str], option: str, timeout: str | None) -> Record:
    """Take the listed nodes out of the pool; the target shrinks by as many."""
    pool = await get_pool(ctx, pool_id)
    members = set(await reads.members(ctx.wire, ctx.keys.pool_nodes(pool["key"])))
    missing = [node_id for node_id in node_ids if node_id not in members]
    if missing:
        raise NotFound(f"The specified node does not exist: {missing[0]}", code="NodeNotFound")
    count = len(members) - len(node_ids)
    await resize_pool(ctx, pool_id, max(count, 0), option, timeout)
    for node_id in node_ids:
        await leave_pool(ctx, node_id, option)
    return await get_pool(ctx, pool_id)
