"""Routes that honour conditional headers, and the entity each one is conditional on."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from controller.api.common import context, param
from controller.domain.clock import http_date, parse_iso
from controller.domain.conditions import Verdict, parse_conditions
from controller.errors import condition_not_met
from controller.render import Record
from controller.services import jobs, jobschedules, pools, tasks

Handler = Callable[[Request], Awaitable[Response]]
Loader = Callable[[Request], Awaitable[Record]]

READS = frozenset({"GET", "HEAD"})


def conditional(load: Loader) -> Callable[[Handler], Handler]:
    """Answer 304 or 412 `ConditionNotMet` when the request's conditions do not hold for the entity `load` reads;
    otherwise run the route."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: Request) -> Response:
            conditions = parse_conditions(request.headers)
            if not conditions.given:
                return await handler(request)
            record = await load(request)
            verdict = conditions.evaluate(record["etag"], parse_iso(record["modified"]), request.method in READS)
            if verdict is Verdict.NOT_MODIFIED:
                headers = {"ETag": record["etag"], "Last-Modified": http_date(parse_iso(record["modified"]))}
                return Response(status_code=304, headers=headers)
            if verdict is Verdict.FAILED:
                raise condition_not_met()
            return await handler(request)

        return checked

    return wrap


def if_etag(request: Request) -> str | None:
    """The one ETag a request's `If-Match` names, which its write compares and sets on."""
    return parse_conditions(request.headers).expected_etag


async def pool(request: Request) -> Record:
    """The pool a route names."""
    return await pools.get_pool(context(request), param(request, "pool_id"))


async def job(request: Request) -> Record:
    """The job a route names."""
    return await jobs.get_job(context(request), param(request, "job_id"))


async def task(request: Request) -> Record:
    """The task a route names."""
    return await tasks.get_task(context(request), param(request, "job_id"), param(request, "task_id"))


async def schedule(request: Request) -> Record:
    """The job schedule a route names."""
    return await jobschedules.get_schedule(context(request), param(request, "schedule_id"))
