"""Pool and node use cases: create and read pools, list and read nodes."""

from __future__ import annotations

import json
import time
from typing import Any

from controller import render
from controller.api.odata import ListOptions
from controller.context import Context
from controller.domain.clock import iso, new_etag, now, parse_duration
from controller.domain.ids import key_of
from controller.errors import Conflict, NotFound, condition_not_met
from controller.render import Record
from controller.schemas.pools import PoolCreate, PoolReplace, PoolUpdate
from controller.services.applications import require_packages
from controller.services.records import Page, changed_spec, load, load_or_404, new_record, page
from controller.store import reads

DEFAULT_RESIZE_TIMEOUT_SECONDS = 15 * 60


async def create_pool(ctx: Context, body: PoolCreate) -> Record:
    """Create a pool; 409 PoolExists when an id equal ignoring case exists."""
    pool_key, stamp = key_of(body.id), iso(now())
    fields = {
        **new_record(body, body.id, stamp),
        "config_version": new_etag(),
        "alloc_state": "resizing" if body.target_dedicated_nodes else "steady",
        "alloc_stt": stamp,
        "resize_deadline": str(resize_deadline_ms(body.resize_timeout)),
    }
    existing = await ctx.transitions.create(ctx.keys.pool(pool_key), ctx.keys.pools(), pool_key, fields)
    if existing is not None:
        raise Conflict(f"The specified pool already exists: {existing}", code="PoolExists")
    return fields


async def get_pool(ctx: Context, pool_id: str) -> Record:
    """A pool's record; 404 PoolNotFound."""
    key = ctx.keys.pool(key_of(pool_id))
    return await load_or_404(ctx.wire, key, "PoolNotFound", f"The specified pool does not exist: {pool_id}")


async def render_pool(ctx: Context, record: Record) -> dict[str, Any]:
    """A pool as JSON, with its current node count."""
    count = await ctx.redis.zcard(ctx.keys.pool_nodes(record["key"]))
    return render.pool(record, count, ctx.endpoint)


async def list_pools(ctx: Context, options: ListOptions) -> Page:
    """A page of pools in id order."""
    return await page(ctx.wire, ctx.keys.pools(), ctx.keys.pool, lambda record: render_pool(ctx, record), options)


def _spec(pool: Record) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(pool["spec"])
    return spec


async def list_nodes(ctx: Context, pool_id: str, options: ListOptions) -> Page:
    """A page of a pool's nodes in id order."""
    pool = await get_pool(ctx, pool_id)
    spec = _spec(pool)
    return await page(
        ctx.wire,
        ctx.keys.pool_nodes(pool["key"]),
        ctx.keys.node,
        lambda r: render.node(r, spec, ctx.endpoint),
        options,
    )


async def get_node(ctx: Context, pool_id: str, node_id: str) -> dict[str, Any]:
    """A node as JSON; 404 PoolNotFound or NodeNotFound."""
    pool = await get_pool(ctx, pool_id)
    record = await load(ctx.wire, ctx.keys.node(node_id))
    if record is None or record.get("pool") != pool["key"]:
        raise NotFound(f"The specified node does not exist: {node_id}", code="NodeNotFound")
    return render.node(record, _spec(pool), ctx.endpoint)


async def list_node_counts(ctx: Context, options: ListOptions) -> Page:
    """A page of pools with their nodes counted by state, in pool id order."""

    async def counted(pool: Record) -> dict[str, Any]:
        members = await reads.members(ctx.wire, ctx.keys.pool_nodes(pool["key"]))
        records = await reads.records(ctx.wire, [ctx.keys.node(member) for member in members])
        return render.node_counts(pool["id"], [render.shown_node_state(record) for record in records if record])

    return await page(ctx.wire, ctx.keys.pools(), ctx.keys.pool, counted, options)


def resize_deadline_ms(timeout: str | None) -> int:
    """When a resize started now times out."""
    delta = parse_duration(timeout) if timeout else None
    seconds = delta.total_seconds() if delta is not None else DEFAULT_RESIZE_TIMEOUT_SECONDS
    return int((time.time() + seconds) * 1000)


def _pool_conflict(result: list[str], pool_id: str) -> None:
    if result[0] == "missing":
        raise NotFound(f"The specified pool does not exist: {pool_id}", code="PoolNotFound")
    if result[0] == "state":
        code = "PoolBeingDeleted" if result[1] == "deleting" else "PoolBeingResized"
        raise Conflict(f"The operation is not allowed while the pool is {result[1]}", code=code)
    if result[0] == "etag":
        raise condition_not_met()


async def resize_pool(ctx: Context, pool_id: str, target: int, option: str, timeout: str | None) -> Record:
    """Start resizing a steady pool to `target` dedicated nodes."""
    pool = await get_pool(ctx, pool_id)
    if pool["state"] == "deleting":
        raise Conflict("The pool is being deleted", code="PoolBeingDeleted")
    stamp = iso(now())
    fields = {
        "target": str(target),
        "alloc_state": "resizing",
        "alloc_stt": stamp,
        "resize_option": option,
        "resize_deadline": str(resize_deadline_ms(timeout)),
        "resize_errors": "",
        "etag": new_etag(),
        "modified": stamp,
    }
    _pool_conflict(
        await ctx.transitions.update_if(ctx.keys.pool(pool["key"]), "alloc_state", "steady", fields), pool_id
    )
    await ctx.wake_scheduler()
    return await get_pool(ctx, pool_id)


async def stop_resize(ctx: Context, pool_id: str) -> Record:
    """Stop a resize: the pool keeps the nodes it has now."""
    pool = await get_pool(ctx, pool_id)
    count = await ctx.redis.zcard(ctx.keys.pool_nodes(pool["key"]))
    fields = {"alloc_state": "stopping", "alloc_stt": iso(now()), "target": str(count), "etag": new_etag()}
    result = await ctx.transitions.update_if(ctx.keys.pool(pool["key"]), "alloc_state", "resizing,steady", fields)
    _pool_conflict(result, pool_id)
    return await get_pool(ctx, pool_id)


async def delete_pool(ctx: Context, pool_id: str) -> None:
    """Begin deleting a pool: its nodes leave (running tasks are requeued), then the pool is gone."""
    pool = await get_pool(ctx, pool_id)
    fields = {"state": "deleting", "pstate": pool["state"], "pstt": pool["stt"], "stt": iso(now()), "etag": new_etag()}
    _pool_conflict(await ctx.transitions.update_if(ctx.keys.pool(pool["key"]), "state", "active", fields), pool_id)
    await ctx.wake_scheduler()


async def update_pool(ctx: Context, pool_id: str, body: PoolUpdate | PoolReplace, if_etag: str | None = None) -> Record:
    """Change a pool's properties (only while its ETag is `if_etag`, when given). Nodes already in the pool
    keep the start task and packages they applied until they restart; nodes that join or restart afterwards
    apply the new ones."""
    pool = await get_pool(ctx, pool_id)
    changes = body.changes()
    await require_packages(ctx, changes.get("applicationPackageReferences") or [])
    if names := body.needs_empty_pool():
        await _require_empty(ctx, pool, names)
    stamp = iso(now())
    fields = {"spec": changed_spec(pool, changes), "config_version": new_etag(), "etag": new_etag(), "modified": stamp}
    result = await ctx.transitions.update_if(ctx.keys.pool(pool["key"]), "state", "active", fields, if_etag)
    _pool_conflict(result, pool_id)
    return await get_pool(ctx, pool_id)


async def _require_empty(ctx: Context, pool: Record, names: list[str]) -> None:
    nodes = await ctx.redis.zcard(ctx.keys.pool_nodes(pool["key"]))
    if nodes or pool.get("alloc_state", "steady") != "steady":
        message = f"{', '.join(names)} can be changed only while the pool is steady and has no nodes"
        raise Conflict(message, code="OperationNotValidOnPool")
