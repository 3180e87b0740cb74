"""/pools routes and the node routes under them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from controller import render
from controller.api.common import context, list_options, param
from controller.api.responses import created, entity, json_response, listing
from controller.api.validation import parse_model
from controller.schemas.pools import PoolCreate
from controller.services import pools


async def create_pool(request: Request) -> Response:
    """POST /pools."""
    ctx = context(request)
    record = await pools.create_pool(ctx, parse_model(await request.body(), PoolCreate))
    return created(record, render.pool_url(ctx.endpoint, record["id"]))


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
