"""Task files, served from the node that ran the task through its signed file server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import quote

import httpx

from controller.context import Context
from controller.domain.clock import http_date, now
from controller.errors import BadRequest, Conflict, InvalidRange, NotFound
from controller.render import task_url
from controller.services.records import load
from controller.services.tasks import get_task
from nodeagent.messages import (
    CREATION_TIME_HEADER,
    DATE_HEADER,
    FILE_MODE_HEADER,
    FILE_SERVER_PREFIX,
    SIGNATURE_HEADER,
    node_signature,
)


@dataclass
class FileStream:
    """An open response from a node's file server, with the headers to send on."""

    status: int
    headers: dict[str, str]
    response: httpx.Response

    async def body(self) -> AsyncIterator[bytes]:
        """The file's bytes, streamed; closes the node response at the end."""
        try:
            async for chunk in self.response.aiter_bytes():
                yield chunk
        finally:
            await self.response.aclose()


def task_file_path(job_id: str, task_id: str, file_path: str) -> str:
    """The node-root-relative path of a file in a task's directory; 400 for paths that leave it."""
    path = PurePosixPath(file_path)
    if not file_path or path.is_absolute() or ".." in path.parts:
        raise BadRequest("The file path must be relative to the task directory", code="InvalidUri")
    return f"workitems/{job_id}/job-1/{task_id}/{path}"


def file_not_found(file_path: str) -> NotFound:
    """404 FileNotFound."""
    return NotFound(f"The specified file does not exist: {file_path}", code="FileNotFound")


async def open_task_file(
    ctx: Context, job_id: str, task_id: str, file_path: str, method: str, byte_range: str
) -> FileStream:
    """Open a task file on its node; GET streams it, HEAD returns its properties only."""
    task = await get_task(ctx, job_id, task_id)
    relative = task_file_path(task["job"], task["id"], file_path)
    if not task.get("node"):
        raise file_not_found(file_path)
    node = await load(ctx.redis, ctx.keys.node(task["node"]))
    if node is None or not node.get("file_url"):
        raise Conflict("The node that ran the task is not available", code="TaskFilesUnavailable")
    url_path = f"{FILE_SERVER_PREFIX}/{quote(relative)}"
    request = ctx.http.build_request(
        method, node["file_url"].rstrip("/") + url_path, headers=_signed(ctx, method, url_path, byte_range)
    )
    try:
        response = await ctx.http.send(request, stream=True)
    except httpx.HTTPError:
        raise Conflict("The node that ran the task did not answer", code="TaskFilesUnavailable") from None
    await _raise_for_status(response, file_path)
    public_url = f"{task_url(ctx.endpoint, task['job'], task['id'])}/files/{quote(file_path, safe='')}"
    return FileStream(response.status_code, _file_headers(response, public_url), response)


def _signed(ctx: Context, method: str, path: str, byte_range: str) -> dict[str, str]:
    date = http_date(now())
    headers = {DATE_HEADER: date, SIGNATURE_HEADER: node_signature(ctx.settings.node_secret, method, path, date, b"")}
    if byte_range:
        headers["range"] = byte_range
    return headers


async def _raise_for_status(response: httpx.Response, file_path: str) -> None:
    if response.status_code < 300:
        return
    await response.aclose()
    if response.status_code == 404:
        raise file_not_found(file_path)
    if response.status_code == 416:
        raise InvalidRange("The requested range cannot be satisfied")
    if response.status_code == 400:
        raise BadRequest("The file path is not valid", code="InvalidUri")
    raise Conflict("The node could not serve the file", code="TaskFilesUnavailable")


def _file_headers(response: httpx.Response, public_url: str) -> dict[str, str]:
    source = response.headers
    is_directory = source.get("x-batchyard-is-directory", "false")
    headers = {
        "content-type": "application/octet-stream",
        "content-length": source.get("content-length", "0"),
        "last-modified": source.get("last-modified", ""),
        "ocp-creation-time": source.get(CREATION_TIME_HEADER, source.get("last-modified", "")),
        "ocp-batch-file-isdirectory": is_directory,
        "ocp-batch-file-url": public_url,
        "ocp-batch-file-mode": source.get(FILE_MODE_HEADER, ""),
    }
    if "content-range" in source:
        headers["content-range"] = source["content-range"]
    return {name: value for name, value in headers.items() if value}
