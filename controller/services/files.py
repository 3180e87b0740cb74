"""Task and node files, served from the node through its signed file server."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

import httpx

from controller.api.odata import ListOptions, project
from controller.context import Context
from controller.domain.clock import http_date, iso, now
from controller.errors import BadRequest, BatchError, Conflict, InvalidRange, NotFound
from controller.render import Record, node_url, task_url
from controller.services.pools import get_pool
from controller.services.records import Page, load
from controller.services.tasks import get_task
from nodeagent.messages import (
    CREATION_TIME_HEADER,
    DATE_HEADER,
    FILE_MODE_HEADER,
    FILE_SERVER_PREFIX,
    IS_DIRECTORY_HEADER,
    LIST_QUERY,
    RECURSIVE_QUERY,
    SIGNATURE_HEADER,
    FileEntry,
    FileListing,
    node_signature,
)

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Location:
    """Where a file API path lives: the node, the directory under the node root, and the public URL base."""

    node_id: str
    base: str
    public: str


def relative(file_path: str) -> str:
    """A file API path checked to stay below its base; 400 otherwise."""
    path = PurePosixPath(file_path)
    if path.is_absolute() or ".." in path.parts:
        raise BadRequest("The file path must be relative and must not contain '..'", code="InvalidUri")
    return str(path) if file_path else ""


async def task_location(ctx: Context, job_id: str, task_id: str) -> Location:
    """The node and directory holding a task's files; 404 FileNotFound before the task ever ran."""
    task = await get_task(ctx, job_id, task_id)
    if not task.get("node"):
        raise NotFound(f"The task has not run on a node yet: {task_id}", code="FileNotFound")
    return Location(task["node"], task_dir(task), f"{task_url(ctx.endpoint, task['job'], task['id'])}/files")


async def node_location(ctx: Context, pool_id: str, node_id: str) -> Location:
    """The node root of a pool's node; 404 PoolNotFound / NodeNotFound."""
    pool = await get_pool(ctx, pool_id)
    node = await load(ctx.wire, ctx.keys.node(node_id))
    if node is None or node.get("pool") != pool["key"]:
        raise NotFound(f"The specified node does not exist: {node_id}", code="NodeNotFound")
    return Location(node_id, "", f"{node_url(ctx.endpoint, pool['id'], node_id)}/files")


def _joined(location: Location, file_path: str) -> str:
    path = relative(file_path)
    return "/".join(part for part in (location.base, path) if part)


async def _send(
    ctx: Context, location: Location, method: str, path: str, query: str = "", extra: dict[str, str] | None = None
) -> httpx.Response:
    node: Record | None = await load(ctx.wire, ctx.keys.node(location.node_id))
    if node is None or not node.get("file_url"):
        raise Conflict("The node is not available", code="TaskFilesUnavailable")
    url_path = f"{FILE_SERVER_PREFIX}/{quote(path)}"
    date = http_date(now())
    headers = {
        DATE_HEADER: date,
        SIGNATURE_HEADER: node_signature(ctx.settings.node_secret, method, url_path, date, b""),
    }
    target = node["file_url"].rstrip("/") + url_path + (f"?{query}" if query else "")
    request = ctx.http.build_request(method, target, headers={**headers, **(extra or {})})
    try:
        return await ctx.http.send(request, stream=True)
    except httpx.HTTPError:
        raise Conflict("The node did not answer", code="TaskFilesUnavailable") from None


async def _raise_for_status(response: httpx.Response, file_path: str) -> None:
    if response.status_code < 300:
        return
    await response.aclose()
    errors = {
        404: NotFound(f"The specified file does not exist: {file_path}", code="FileNotFound"),
        416: InvalidRange("The requested range cannot be satisfied"),
        400: BadRequest("The file path is not valid", code="InvalidUri"),
        409: Conflict("The directory is not empty; delete it recursively", code="OperationInvalidForCurrentState"),
    }
    raise errors.get(response.status_code, Conflict("The node could not serve the file", code="TaskFilesUnavailable"))


async def open_file(ctx: Context, location: Location, file_path: str, method: str, byte_range: str) -> FileStream:
    """Open a file on its node; GET streams it, HEAD returns its properties only."""
    extra = {"range": byte_range} if byte_range else None
    response = await _send(ctx, location, method, _joined(location, file_path), extra=extra)
    await _raise_for_status(response, file_path)
    headers = _file_headers(response, f"{location.public}/{quote(file_path, safe='')}")
    # The service answers a ranged read (ocp-range) with 200, not 206: the SDKs accept only 200.
    return FileStream(200, headers, response)


def _file_headers(response: httpx.Response, public_url: str) -> dict[str, str]:
    source = response.headers
    headers = {
        "content-type": "application/octet-stream",
        "content-length": source.get("content-length", "0"),
        "last-modified": source.get("last-modified", ""),
        "ocp-creation-time": source.get(CREATION_TIME_HEADER, source.get("last-modified", "")),
        "ocp-batch-file-isdirectory": source.get(IS_DIRECTORY_HEADER, "false"),
        "ocp-batch-file-url": public_url,
        "ocp-batch-file-mode": source.get(FILE_MODE_HEADER, ""),
    }
    if "content-range" in source:
        headers["content-range"] = source["content-range"]
    return {name: value for name, value in headers.items() if value}


async def delete_file(ctx: Context, location: Location, file_path: str, recursive: bool) -> None:
    """Delete a file, or a directory with `recursive`."""
    if not relative(file_path):
        raise BadRequest("The root directory cannot be deleted", code="InvalidUri")
    query = f"{RECURSIVE_QUERY}=true" if recursive else ""
    response = await _send(ctx, location, "DELETE", _joined(location, file_path), query)
    await _raise_for_status(response, file_path)
    await response.aclose()


def task_dir(task: Record) -> str:
    """A task's directory under its node's root."""
    return f"workitems/{task['job']}/job-1/{task['id']}"


async def delete_task_files(ctx: Context, task: Record) -> None:
    """Remove a deleted task's directory from the node it last ran on (best effort: the node may be gone)."""
    if not task.get("node"):
        return
    try:
        await delete_file(ctx, Location(task["node"], "", ""), task_dir(task), recursive=True)
    except (BatchError, httpx.HTTPError) as error:
        log.info("task %s/%s: files not deleted from node %s: %s", task["job"], task["id"], task["node"], error)


async def list_files(ctx: Context, location: Location, recursive: bool, options: ListOptions) -> Page:
    """A page of the files below a location, as BatchNodeFile JSON, in name order."""
    query = f"{LIST_QUERY}=1" + (f"&{RECURSIVE_QUERY}=true" if recursive else "")
    response = await _send(ctx, location, "GET", location.base, query)
    await _raise_for_status(response, location.base or "/")
    listing = FileListing.model_validate_json(await response.aread())
    await response.aclose()
    items = sorted((_node_file(entry, location) for entry in listing.entries), key=lambda item: str(item["name"]))
    return _page_of(items, options)


def _node_file(entry: FileEntry, location: Location) -> dict[str, Any]:
    name = entry.path.removeprefix(location.base).lstrip("/") if location.base else entry.path
    properties: dict[str, Any] = {
        "creationTime": iso(entry.created),
        "lastModified": iso(entry.modified),
        "contentLength": 0 if entry.is_directory else entry.size,
        "fileMode": entry.mode,
    }
    if not entry.is_directory:
        properties["contentType"] = "application/octet-stream"
    return {
        "name": name,
        "url": f"{location.public}/{quote(name, safe='')}",
        "isDirectory": entry.is_directory,
        "properties": properties,
    }


def _page_of(items: list[dict[str, Any]], options: ListOptions) -> Page:
    after = [item for item in items if not options.skip_token or str(item["name"]) > options.skip_token]
    chosen = [item for item in after if options.predicate is None or options.predicate(item)]
    page = chosen[: options.max_results]
    more = len(chosen) > options.max_results
    return Page([project(item, options.select) for item in page], str(page[-1]["name"]) if more else "")
