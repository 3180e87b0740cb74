"""File routes of tasks and nodes: list, read (or read properties), delete; the bytes come from the node."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from controller.api.common import context, list_options, param, query
from controller.api.responses import listing
from controller.services import files
from controller.services.files import Location


async def _task(request: Request) -> Location:
    return await files.task_location(context(request), param(request, "job_id"), param(request, "task_id"))


async def _node(request: Request) -> Location:
    return await files.node_location(context(request), param(request, "pool_id"), param(request, "node_id"))


def _recursive(request: Request) -> bool:
    return query(request).get("recursive", "").lower() == "true"


async def _serve(request: Request, location: Location) -> Response:
    path = param(request, "file_path")
    if request.method == "DELETE":
        await files.delete_file(context(request), location, path, _recursive(request))
        return Response(status_code=200)
    byte_range = request.headers.get("ocp-range", "")
    stream = await files.open_file(context(request), location, path, request.method, byte_range)
    if request.method == "HEAD":
        await stream.response.aclose()
        return Response(status_code=200, headers=stream.headers)
    return StreamingResponse(stream.body(), status_code=stream.status, headers=stream.headers)


async def _list(request: Request, location: Location) -> Response:
    ctx, options = context(request), list_options(request)
    page = await files.list_files(ctx, location, _recursive(request), options)
    return listing(request, page, options, ctx.endpoint, "files")


async def task_file(request: Request) -> Response:
    """GET, HEAD and DELETE /jobs/{jobId}/tasks/{taskId}/files/{filePath}."""
    return await _serve(request, await _task(request))


async def task_files(request: Request) -> Response:
    """GET /jobs/{jobId}/tasks/{taskId}/files."""
    return await _list(request, await _task(request))


async def node_file(request: Request) -> Response:
    """GET, HEAD and DELETE /pools/{poolId}/nodes/{nodeId}/files/{filePath}."""
    return await _serve(request, await _node(request))


async def node_files(request: Request) -> Response:
    """GET /pools/{poolId}/nodes/{nodeId}/files."""
    return await _list(request, await _node(request))
