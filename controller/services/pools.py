"""Pool and node use cases: create and read pools, list and read nodes."""

from __future__ import annotations

import json
from typing import Any

from controller import render
from controller.api.odata import ListOptions
from controller.context import Context
from controller.domain.clock import iso, now
from controller.domain.ids import key_of
from controller.errors import Conflict, NotFound
from controller.render import Record
from controller.schemas.pools import PoolCreate
from controller.services.records import Page, load, load_or_404, new_record, page


async def create_pool(ctx: Context, body: PoolCreate) -> Record:
    """Create a pool; 409 PoolExists when an id equal ignoring case exists."""
    pool_key, stamp = key_of(body.id), iso(now())
    fields = {
        **new_record(body, body.id, stamp),
        "alloc_state": "steady",
        "alloc_stt": stamp,
    }
    existing = await ctx.transitions.create(ctx.keys.pool(pool_key), ctx.keys.pools(), pool_key, fields)
    if existing is not None:
        raise Conflict(f"The specified pool already exists: {existing}", code="PoolExists")
    return fields


async def get_pool(ctx: Context, pool_id: str) -> Record:
    """A pool's record; 404 PoolNotFound."""
    key = ctx.keys.pool(key_of(pool_id))
    return await load_or_404(ctx.redis, key, "PoolNotFound", f"The specified pool does not exist: {pool_id}")


async def render_pool(ctx: Context, record: Record) -> dict[str, Any]:
    """A pool as JSON, with its current node count."""
    count = await ctx.redis.zcard(ctx.keys.pool_nodes(record["key"]))
    return render.pool(record, count, ctx.endpoint)


async def list_pools(ctx: Context, options: ListOptions) -> Page:
    """A page of pools in id order."""
    return await page(ctx.redis, ctx.keys.pools(), ctx.keys.pool, lambda record: render_pool(ctx, record), options)


def _spec(pool: Record) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(pool["spec"])
    return spec


async def list_nodes(ctx: Context, pool_id: str, options: ListOptions) -> Page:
    """A page of a pool's nodes in id order."""
    pool = await get_pool(ctx, pool_id)
    spec = _spec(pool)
    return await page(
        ctx.redis,
        ctx.keys.pool_nodes(pool["key"]),
        ctx.keys.node,
        lambda r: render.node(r, spec, ctx.endpoint),
        options,
    )


async def get_node(ctx: Context, pool_id: str, node_id: str) -> dict[str, Any]:
    """A node as JSON; 404 PoolNotFound or NodeNotFound."""
    pool = await get_pool(ctx, pool_id)
    record = await load(ctx.redis, ctx.keys.node(node_id))
    if record is None or record.get("pool") != pool["key"]:
        raise NotFound(f"The specified node does not exist: {node_id}", code="NodeNotFound")
    return render.node(record, _spec(pool), ctx.endpoint)
