"""/jobschedules routes: parse, call a service, shape the response."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from controller.api import conditions
from controller.api.common import context, in_background, list_options, param
from controller.api.conditions import conditional, if_etag
from controller.api.responses import accepted, created, entity, entity_headers, listing
from controller.api.validation import parse_model
from controller.schemas.jobs import JobScheduleCreate, JobScheduleReplace, JobScheduleUpdate
from controller.services import jobschedules


async def create_schedule(request: Request) -> Response:
    """POST /jobschedules."""
    ctx = context(request)
    body = parse_model(await request.body(), JobScheduleCreate)
    record = await jobschedules.create_schedule(ctx, body)
    return created(record, jobschedules.schedule_url(ctx.endpoint, record["id"]))


@conditional(conditions.schedule)
async def get_schedule(request: Request) -> Response:
    """GET /jobschedules/{jobScheduleId}."""
    ctx = context(request)
    record = await jobschedules.get_schedule(ctx, param(request, "schedule_id"))
    body = jobschedules.render_schedule(record, ctx.endpoint)
    return entity(body, record, body["url"], ctx.endpoint, "jobschedules")


@conditional(conditions.schedule)
async def update_schedule(request: Request) -> Response:
    """PATCH /jobschedules/{jobScheduleId}."""
    body = parse_model(await request.body(), JobScheduleUpdate)
    return await _updated(request, body)


@conditional(conditions.schedule)
async def replace_schedule(request: Request) -> Response:
    """PUT /jobschedules/{jobScheduleId}."""
    body = parse_model(await request.body(), JobScheduleReplace)
    return await _updated(request, body.as_update())


async def _updated(request: Request, update: JobScheduleUpdate) -> Response:
    ctx = context(request)
    record = await jobschedules.update_schedule(ctx, param(request, "schedule_id"), update, if_etag(request))
    return Response(
        status_code=200, headers=entity_headers(record, jobschedules.schedule_url(ctx.endpoint, record["id"]))
    )


@conditional(conditions.schedule)
async def schedule_exists(request: Request) -> Response:
    """HEAD /jobschedules/{jobScheduleId}: 200 when it exists, 404 when not."""
    await jobschedules.get_schedule(context(request), param(request, "schedule_id"))
    return Response(status_code=200)


async def list_schedules(request: Request) -> Response:
    """GET /jobschedules."""
    ctx = context(request)
    options = list_options(request)
    return listing(request, await jobschedules.list_schedules(ctx, options), options, ctx.endpoint, "jobschedules")


async def list_schedule_jobs(request: Request) -> Response:
    """GET /jobschedules/{jobScheduleId}/jobs."""
    ctx = context(request)
    options = list_options(request)
    page = await jobschedules.list_schedule_jobs(ctx, param(request, "schedule_id"), options)
    return listing(request, page, options, ctx.endpoint, "jobs")


@conditional(conditions.schedule)
async def disable_schedule(request: Request) -> Response:
    """POST /jobschedules/{jobScheduleId}/disable."""
    await jobschedules.disable_schedule(context(request), param(request, "schedule_id"))
    return Response(status_code=204)


@conditional(conditions.schedule)
async def enable_schedule(request: Request) -> Response:
    """POST /jobschedules/{jobScheduleId}/enable."""
    await jobschedules.enable_schedule(context(request), param(request, "schedule_id"))
    return Response(status_code=204)


@conditional(conditions.schedule)
async def terminate_schedule(request: Request) -> Response:
    """POST /jobschedules/{jobScheduleId}/terminate."""
    ctx = context(request)
    record = await jobschedules.terminate_schedule(ctx, param(request, "schedule_id"))
    return accepted(record, jobschedules.schedule_url(ctx.endpoint, record["id"]))


@conditional(conditions.schedule)
async def delete_schedule(request: Request) -> Response:
    """DELETE /jobschedules/{jobScheduleId}: the schedule and its jobs, in the background."""
    ctx = context(request)
    record = await jobschedules.get_schedule(ctx, param(request, "schedule_id"))
    in_background(request, jobschedules.delete_schedule(ctx, record["id"]))
    return Response(status_code=202)
