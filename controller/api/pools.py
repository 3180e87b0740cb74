"""/pools routes and the node routes under them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from controller import render
from controller.api import conditions
from controller.api.common import context, list_options, param
from controller.api.conditions import conditional, if_etag
from controller.api.responses import accepted, created, entity, entity_headers, json_response, listing
from controller.api.validation import parse_model
from controller.converge import target_nodes as pools_target
from controller.schemas.pools import (
    NodeDisableScheduling,
    NodeReboot,
    NodeRemove,
    PoolCreate,
    PoolReplace,
    PoolResize,
    PoolUpdate,
)
from controller.services import nodes, pools


async def create_pool(request: Request) -> Response:
    """POST /pools."""
    ctx = context(request)
    record = await pools.create_pool(ctx, parse_model(await request.body(), PoolCreate))
    return created(record, render.pool_url(ctx.endpoint, record["id"]))


@conditional(conditions.pool)
async def get_pool(request: Request) -> Response:
    """GET /pools/{poolId}."""
    ctx = context(request)
    record = await pools.get_pool(ctx, param(request, "pool_id"))
    url = render.pool_url(ctx.endpoint, record["id"])
    return entity(await pools.render_pool(ctx, record), record, url, ctx.endpoint, "pools")


async def list_pools(request: Request) -> Response:
    """GET /pools."""
    ctx = context(request)
    options = list_options(request)
    return listing(request, await pools.list_pools(ctx, options), options, ctx.endpoint, "pools")


async def list_nodes(request: Request) -> Response:
    """GET /pools/{poolId}/nodes."""
    ctx = context(request)
    options = list_options(request)
    page = await pools.list_nodes(ctx, param(request, "pool_id"), options)
    return listing(request, page, options, ctx.endpoint, "nodes")


async def get_node(request: Request) -> Response:
    """GET /pools/{poolId}/nodes/{nodeId}."""
    ctx = context(request)
    node = await pools.get_node(ctx, param(request, "pool_id"), param(request, "node_id"))
    return json_response({"odata.metadata": f"{ctx.endpoint}/$metadata#nodes/@Element", **node})


@conditional(conditions.pool)
async def pool_exists(request: Request) -> Response:
    """HEAD /pools/{poolId}: 200 when it exists, 404 when not."""
    await pools.get_pool(context(request), param(request, "pool_id"))
    return Response(status_code=200)


@conditional(conditions.pool)
async def delete_pool(request: Request) -> Response:
    """DELETE /pools/{poolId}."""
    await pools.delete_pool(context(request), param(request, "pool_id"))
    return Response(status_code=202)


@conditional(conditions.pool)
async def update_pool(request: Request) -> Response:
    """PATCH /pools/{poolId}: the properties given replace the pool's."""
    ctx = context(request)
    body = parse_model(await request.body(), PoolUpdate)
    record = await pools.update_pool(ctx, param(request, "pool_id"), body, if_etag(request))
    return Response(status_code=200, headers=entity_headers(record, render.pool_url(ctx.endpoint, record["id"])))


async def replace_pool_properties(request: Request) -> Response:
    """POST /pools/{poolId}/updateproperties: start task, packages and metadata replaced whole."""
    ctx = context(request)
    body = parse_model(await request.body(), PoolReplace)
    record = await pools.update_pool(ctx, param(request, "pool_id"), body)
    return Response(status_code=204, headers=entity_headers(record, render.pool_url(ctx.endpoint, record["id"])))


@conditional(conditions.pool)
async def resize_pool(request: Request) -> Response:
    """POST /pools/{poolId}/resize."""
    ctx = context(request)
    body = parse_model(await request.body(), PoolResize)
    current = await pools.get_pool(ctx, param(request, "pool_id"))
    target = body.target_dedicated_nodes if body.target_dedicated_nodes is not None else pools_target(current)
    option = body.node_deallocation_option or "requeue"
    record = await pools.resize_pool(ctx, param(request, "pool_id"), target, option, body.resize_timeout)
    return accepted(record, render.pool_url(ctx.endpoint, record["id"]))


@conditional(conditions.pool)
async def stop_resize(request: Request) -> Response:
    """POST /pools/{poolId}/stopresize."""
    ctx = context(request)
    record = await pools.stop_resize(ctx, param(request, "pool_id"))
    return accepted(record, render.pool_url(ctx.endpoint, record["id"]))


@conditional(conditions.pool)
async def remove_nodes(request: Request) -> Response:
    """POST /pools/{poolId}/removenodes."""
    ctx = context(request)
    body = parse_model(await request.body(), NodeRemove)
    option = body.node_deallocation_option or "requeue"
    record = await nodes.remove_nodes(ctx, param(request, "pool_id"), body.node_list, option, body.resize_timeout)
    return accepted(record, render.pool_url(ctx.endpoint, record["id"]))


async def disable_scheduling(request: Request) -> Response:
    """POST /pools/{poolId}/nodes/{nodeId}/disablescheduling."""
    raw = await request.body()
    body = parse_model(raw, NodeDisableScheduling) if raw.strip() else NodeDisableScheduling()
    option = body.node_disable_scheduling_option or "requeue"
    await nodes.disable_scheduling(context(request), param(request, "pool_id"), param(request, "node_id"), option)
    return Response(status_code=200)


async def enable_scheduling(request: Request) -> Response:
    """POST /pools/{poolId}/nodes/{nodeId}/enablescheduling."""
    await nodes.enable_scheduling(context(request), param(request, "pool_id"), param(request, "node_id"))
    return Response(status_code=200)


async def reboot_node(request: Request) -> Response:
    """POST /pools/{poolId}/nodes/{nodeId}/reboot."""
    raw = await request.body()
    body = parse_model(raw, NodeReboot) if raw.strip() else NodeReboot()
    option = body.node_reboot_option or "requeue"
    await nodes.reboot(context(request), param(request, "pool_id"), param(request, "node_id"), option)
    return Response(status_code=202)
