"""Task file routes: stream a file (or its properties) from the node that ran the task."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from controller.api.common import context, param
from controller.services.files import open_task_file


async def task_file(request: Request) -> Response:
    """GET and HEAD /jobs/{jobId}/tasks/{taskId}/files/{filePath}."""
    ctx = context(request)
    byte_range = request.headers.get("ocp-range", "")
    stream = await open_task_file(
        ctx,
        param(request, "job_id"),
        param(request, "task_id"),
        param(request, "file_path"),
        request.method,
        byte_range,
    )
    if request.method == "HEAD":
        await stream.response.aclose()
        return Response(status_code=200, headers=stream.headers)
    return StreamingResponse(stream.body(), status_code=stream.status, headers=stream.headers)
