"""Account-wide reads: node counts per pool and the images nodes offer."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from controller.api.common import context, list_options
from controller.api.responses import listing
from controller.domain.images import SUPPORTED_IMAGES
from controller.services import pools
from controller.services.records import page_of


async def list_node_counts(request: Request) -> Response:
    """GET /nodecounts: each pool's nodes counted by state."""
    ctx, options = context(request), list_options(request)
    page = await pools.list_node_counts(ctx, options)
    return listing(request, page, options, ctx.endpoint, "poolnodecounts")


async def list_supported_images(request: Request) -> Response:
    """GET /supportedimages."""
    ctx, options = context(request), list_options(request)
    page = page_of(list(SUPPORTED_IMAGES), options)
    return listing(request, page, options, ctx.endpoint, "supportedimages")
