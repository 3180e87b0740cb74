"""/jobs routes: parse, call a service, shape the response."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from controller import render
from controller.api import conditions
from controller.api.common import context, in_background, list_options, param
from controller.api.conditions import conditional, if_etag
from controller.api.responses import accepted, created, entity, entity_headers, json_response, listing
from controller.api.validation import parse_json, parse_model
from controller.render import Record
from controller.schemas.jobs import JobCreate, JobDisable, JobReplace, JobTerminate, JobUpdate
from controller.services import jobs, jobtasks, tasks


async def create_job(request: Request) -> Response:
    """POST /jobs."""
    ctx = context(request)
    body = parse_model(await request.body(), JobCreate)
    record = await jobs.create_job(ctx, body)
    if body.job_manager_task is not None:
        await tasks.add_job_manager(ctx, record["id"], body.job_manager_task)
    return created(record, render.job_url(ctx.endpoint, record["id"]))


@conditional(conditions.job)
async def get_job(request: Request) -> Response:
    """GET /jobs/{jobId}."""
    ctx = context(request)
    record = await jobs.get_job(ctx, param(request, "job_id"))
    url = render.job_url(ctx.endpoint, record["id"])
    return entity(render.job(record, ctx.endpoint), record, url, ctx.endpoint, "jobs")


async def list_jobs(request: Request) -> Response:
    """GET /jobs."""
    ctx = context(request)
    options = list_options(request)
    return listing(request, await jobs.list_jobs(ctx, options), options, ctx.endpoint, "jobs")


@conditional(conditions.job)
async def terminate_job(request: Request) -> Response:
    """POST /jobs/{jobId}/terminate."""
    ctx = context(request)
    raw = await request.body()
    body = parse_model(raw, JobTerminate) if parse_json(raw, required=False) is not None else JobTerminate()
    record = await jobs.terminate_job(ctx, param(request, "job_id"), body.terminate_reason or "UserTerminate")
    return accepted(record, render.job_url(ctx.endpoint, record["id"]))


@conditional(conditions.job)
async def delete_job(request: Request) -> Response:
    """DELETE /jobs/{jobId}."""
    ctx = context(request)
    purge = await jobs.delete_job(ctx, param(request, "job_id"))
    if purge is not None:
        in_background(request, purge)
    return Response(status_code=202)


@conditional(conditions.job)
async def disable_job(request: Request) -> Response:
    """POST /jobs/{jobId}/disable."""
    ctx = context(request)
    body = parse_model(await request.body(), JobDisable)
    record = await jobs.disable_job(ctx, param(request, "job_id"), body.disable_tasks)
    return accepted(record, render.job_url(ctx.endpoint, record["id"]))


@conditional(conditions.job)
async def enable_job(request: Request) -> Response:
    """POST /jobs/{jobId}/enable."""
    ctx = context(request)
    record = await jobs.enable_job(ctx, param(request, "job_id"))
    return accepted(record, render.job_url(ctx.endpoint, record["id"]))


async def job_task_status(request: Request) -> Response:
    """GET /jobs/{jobId}/jobpreparationandreleasetaskstatus."""
    ctx = context(request)
    options = list_options(request)
    page = await jobtasks.status_list(ctx, param(request, "job_id"))
    return listing(request, page, options, ctx.endpoint, "jobpreparationandreleasetaskstatuslist")


@conditional(conditions.job)
async def update_job(request: Request) -> Response:
    """PATCH /jobs/{jobId}."""
    ctx = context(request)
    body = parse_model(await request.body(), JobUpdate)
    return _updated(ctx.endpoint, await jobs.update_job(ctx, param(request, "job_id"), body, if_etag(request)))


@conditional(conditions.job)
async def replace_job(request: Request) -> Response:
    """PUT /jobs/{jobId}."""
    ctx = context(request)
    body = parse_model(await request.body(), JobReplace)
    return _updated(ctx.endpoint, await jobs.replace_job(ctx, param(request, "job_id"), body, if_etag(request)))


def _updated(endpoint: str, record: Record) -> Response:
    """200 with the changed job's headers."""
    return Response(status_code=200, headers=entity_headers(record, render.job_url(endpoint, record["id"])))


async def task_counts(request: Request) -> Response:
    """GET /jobs/{jobId}/taskcounts."""
    ctx = context(request)
    counts = await jobs.task_counts(ctx, param(request, "job_id"))
    return json_response({"odata.metadata": f"{ctx.endpoint}/$metadata#taskcounts/@Element", **counts})
