"""/jobs/{jobId}/tasks routes."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from controller import render
from controller.api import conditions
from controller.api.common import context, in_background, list_options, param, query
from controller.api.conditions import conditional, if_etag
from controller.api.responses import created, entity, entity_headers, json_response, listing
from controller.api.validation import parse_json, parse_model
from controller.context import Context
from controller.errors import BadRequest
from controller.schemas.tasks import TaskCreate, TaskReplace
from controller.services import files, tasks
from controller.services.tasks import AddResult


async def add_task(request: Request) -> Response:
    """POST /jobs/{jobId}/tasks."""
    ctx = context(request)
    body = parse_model(await request.body(), TaskCreate)
    (result,) = await tasks.add_tasks(ctx, param(request, "job_id"), [body])
    if result.error is not None:
        raise result.error
    assert result.record is not None
    return created(result.record, render.task_url(ctx.endpoint, result.record["job"], result.record["id"]))


async def add_task_collection(request: Request) -> Response:
    """POST /jobs/{jobId}/addtaskcollection: 200 with one result per task."""
    ctx = context(request)
    data = parse_json(await request.body())
    if not isinstance(data, dict) or not isinstance(data.get("value"), list):
        raise BadRequest("The request body must be an object with a 'value' list of tasks", code="InvalidRequestBody")
    results = await tasks.add_collection(ctx, param(request, "job_id"), data["value"])
    body = {
        "odata.metadata": f"{ctx.endpoint}/$metadata#taskaddresult",
        "value": [_add_result(ctx, param(request, "job_id"), result) for result in results],
    }
    return json_response(body)


def _add_result(ctx: Context, job_id: str, result: AddResult) -> dict[str, Any]:
    if result.error is not None:
        error = result.error
        detail: dict[str, Any] = {"code": error.code, "message": {"lang": "en-US", "value": error.message}}
        if error.values:
            detail["values"] = [{"key": key, "value": value} for key, value in error.values.items()]
        return {"status": "clienterror", "taskId": result.task_id, "error": detail}
    record = result.record or {}
    return {
        "status": "success",
        "taskId": record["id"],
        "eTag": record["etag"],
        "lastModified": record["modified"],
        "location": render.task_url(ctx.endpoint, record["job"], record["id"]),
    }


def _expand_stats(request: Request) -> bool:
    return "stats" in query(request).get("$expand", "").lower().split(",")


@conditional(conditions.task)
async def get_task(request: Request) -> Response:
    """GET /jobs/{jobId}/tasks/{taskId}."""
    ctx = context(request)
    record = await tasks.get_task(ctx, param(request, "job_id"), param(request, "task_id"))
    url = render.task_url(ctx.endpoint, record["job"], record["id"])
    body = render.task(record, ctx.endpoint, expand_stats=_expand_stats(request))
    return entity(body, record, url, ctx.endpoint, "tasks")


async def list_tasks(request: Request) -> Response:
    """GET /jobs/{jobId}/tasks."""
    ctx = context(request)
    options = list_options(request)
    page = await tasks.list_tasks(ctx, param(request, "job_id"), options, _expand_stats(request))
    return listing(request, page, options, ctx.endpoint, "tasks")


@conditional(conditions.task)
async def terminate_task(request: Request) -> Response:
    """POST /jobs/{jobId}/tasks/{taskId}/terminate."""
    await tasks.terminate_task(context(request), param(request, "job_id"), param(request, "task_id"))
    return Response(status_code=204)


@conditional(conditions.task)
async def delete_task(request: Request) -> Response:
    """DELETE /jobs/{jobId}/tasks/{taskId}: the task, and in the background its directory on its node."""
    ctx = context(request)
    task = await tasks.delete_task(ctx, param(request, "job_id"), param(request, "task_id"))
    in_background(request, files.delete_task_files(ctx, task))
    return Response(status_code=200)


@conditional(conditions.task)
async def replace_task(request: Request) -> Response:
    """PUT /jobs/{jobId}/tasks/{taskId}: new constraints."""
    ctx = context(request)
    body = parse_model(await request.body(), TaskReplace)
    record = await tasks.replace_task(ctx, param(request, "job_id"), param(request, "task_id"), body, if_etag(request))
    return Response(
        status_code=200, headers=entity_headers(record, render.task_url(ctx.endpoint, record["job"], record["id"]))
    )


@conditional(conditions.task)
async def reactivate_task(request: Request) -> Response:
    """POST /jobs/{jobId}/tasks/{taskId}/reactivate."""
    await tasks.reactivate_task(context(request), param(request, "job_id"), param(request, "task_id"))
    return Response(status_code=204)


async def list_subtasks(request: Request) -> Response:
    """GET /jobs/{jobId}/tasks/{taskId}/subtasksinfo."""
    ctx = context(request)
    items = await tasks.list_subtasks(ctx, param(request, "job_id"), param(request, "task_id"))
    return json_response({"odata.metadata": f"{ctx.endpoint}/$metadata#subtaskinfo", "value": items})
