"""/applications routes: the application packages uploaded to auto-storage."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from controller.api.common import context, list_options, param
from controller.api.responses import json_response, listing
from controller.services import applications
from controller.services.records import page_of


async def list_applications(request: Request) -> Response:
    """GET /applications."""
    ctx, options = context(request), list_options(request)
    known = await applications.catalogue(ctx)
    items = [applications.render_application(versions) for _, versions in sorted(known.items())]
    return listing(request, page_of(items, options), options, ctx.endpoint, "applications")


async def get_application(request: Request) -> Response:
    """GET /applications/{applicationId}."""
    ctx = context(request)
    body = await applications.get_application(ctx, param(request, "application_id"))
    return json_response({"odata.metadata": f"{ctx.endpoint}/$metadata#applications/@Element", **body})
