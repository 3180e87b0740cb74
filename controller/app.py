"""The controller's ASGI application: the full route list, error handling and background loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
from redis.exceptions import ConnectionError as StoreConnectionError
from redis.exceptions import TimeoutError as StoreTimeoutError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from controller.api import account, agent, applications, files, jobs, jobschedules, pools, tasks
from controller.api.gate import BatchGate
from controller.api.responses import error_response
from controller.context import Context
from controller.dispatch import Dispatcher, make_celery
from controller.errors import BatchError, NotFound, ServerBusy
from controller.providers.base import StaticProvider
from controller.providers.local import LocalProvider
from controller.scheduler import Scheduler
from controller.services.jobs import resume_purges
from controller.settings import ControllerSettings
from controller.storage import AutoStorage
from controller.store.keys import Keys
from controller.store.redis import connect
from controller.store.transitions import Transitions
from controller.store.wire import Wire

log = logging.getLogger(__name__)

JOB = "/jobs/{job_id}"
TASK = JOB + "/tasks/{task_id}"
SCHEDULE = "/jobschedules/{schedule_id}"
POOL = "/pools/{pool_id}"
NODE = POOL + "/nodes/{node_id}"

STORE_RETRY_AFTER_SECONDS = 2
"""The Retry-After of a 503 answered while the state store is unavailable."""

ROUTES = [
    Route("/healthz", lambda request: PlainTextResponse("ok"), methods=["GET"]),
    Route("/jobschedules", jobschedules.create_schedule, methods=["POST"]),
    Route("/jobschedules", jobschedules.list_schedules, methods=["GET"]),
    Route(SCHEDULE, jobschedules.get_schedule, methods=["GET"]),
    Route(SCHEDULE, jobschedules.schedule_exists, methods=["HEAD"]),
    Route(SCHEDULE, jobschedules.delete_schedule, methods=["DELETE"]),
    Route(SCHEDULE, jobschedules.update_schedule, methods=["PATCH"]),
    Route(SCHEDULE, jobschedules.replace_schedule, methods=["PUT"]),
    Route(SCHEDULE + "/jobs", jobschedules.list_schedule_jobs, methods=["GET"]),
    Route(SCHEDULE + "/disable", jobschedules.disable_schedule, methods=["POST"]),
    Route(SCHEDULE + "/enable", jobschedules.enable_schedule, methods=["POST"]),
    Route(SCHEDULE + "/terminate", jobschedules.terminate_schedule, methods=["POST"]),
    Route("/jobs", jobs.create_job, methods=["POST"]),
    Route("/jobs", jobs.list_jobs, methods=["GET"]),
    Route(JOB, jobs.get_job, methods=["GET"]),
    Route(JOB, jobs.delete_job, methods=["DELETE"]),
    Route(JOB, jobs.update_job, methods=["PATCH"]),
    Route(JOB, jobs.replace_job, methods=["PUT"]),
    Route(JOB + "/terminate", jobs.terminate_job, methods=["POST"]),
    Route(JOB + "/disable", jobs.disable_job, methods=["POST"]),
    Route(JOB + "/enable", jobs.enable_job, methods=["POST"]),
    Route(JOB + "/jobpreparationandreleasetaskstatus", jobs.job_task_status, methods=["GET"]),
    Route(JOB + "/taskcounts", jobs.task_counts, methods=["GET"]),
    Route(JOB + "/tasks", tasks.add_task, methods=["POST"]),
    Route(JOB + "/tasks", tasks.list_tasks, methods=["GET"]),
    Route(JOB + "/addtaskcollection", tasks.add_task_collection, methods=["POST"]),
    Route(TASK, tasks.get_task, methods=["GET"]),
    Route(TASK, tasks.delete_task, methods=["DELETE"]),
    Route(TASK, tasks.replace_task, methods=["PUT"]),
    Route(TASK + "/terminate", tasks.terminate_task, methods=["POST"]),
    Route(TASK + "/reactivate", tasks.reactivate_task, methods=["POST"]),
    Route(TASK + "/subtasksinfo", tasks.list_subtasks, methods=["GET"]),
    Route(TASK + "/files", files.task_files, methods=["GET"]),
    Route(TASK + "/files/{file_path:path}", files.task_file, methods=["GET", "HEAD", "DELETE"]),
    Route("/pools", pools.create_pool, methods=["POST"]),
    Route("/pools", pools.list_pools, methods=["GET"]),
    Route(POOL, pools.get_pool, methods=["GET"]),
    Route(POOL, pools.pool_exists, methods=["HEAD"]),
    Route(POOL, pools.delete_pool, methods=["DELETE"]),
    Route(POOL, pools.update_pool, methods=["PATCH"]),
    Route(POOL + "/updateproperties", pools.replace_pool_properties, methods=["POST"]),
    Route(POOL + "/resize", pools.resize_pool, methods=["POST"]),
    Route(POOL + "/stopresize", pools.stop_resize, methods=["POST"]),
    Route(POOL + "/removenodes", pools.remove_nodes, methods=["POST"]),
    Route("/pools/{pool_id}/nodes", pools.list_nodes, methods=["GET"]),
    Route(NODE, pools.get_node, methods=["GET"]),
    Route(NODE + "/disablescheduling", pools.disable_scheduling, methods=["POST"]),
    Route(NODE + "/enablescheduling", pools.enable_scheduling, methods=["POST"]),
    Route(NODE + "/reboot", pools.reboot_node, methods=["POST"]),
    Route(NODE + "/files", files.node_files, methods=["GET"]),
    Route(NODE + "/files/{file_path:path}", files.node_file, methods=["GET", "HEAD", "DELETE"]),
    Route("/nodecounts", account.list_node_counts, methods=["GET"]),
    Route("/supportedimages", account.list_supported_images, methods=["GET"]),
    Route("/applications", applications.list_applications, methods=["GET"]),
    Route("/applications/{application_id}", applications.get_application, methods=["GET"]),
    Route("/agent/v1/nodes/{node_id}/claims", agent.claims, methods=["POST"]),
    Route("/agent/v1/nodes/{node_id}/reports", agent.reports, methods=["POST"]),
    Route("/agent/v1/attempts/{attempt_id}/coordinated", agent.coordinated, methods=["POST"]),
    Route("/agent/v1/attempts/{attempt_id}/gang", agent.gang, methods=["POST"]),
    Route("/agent/v1/nodes/{node_id}/heartbeat", agent.heartbeat, methods=["POST"]),
    Route("/agent/v1/nodes/{node_id}/jobtasks", agent.job_task, methods=["POST"]),
]


def _request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


async def _batch_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, BatchError)
    ctx: Context = request.app.state.ctx
    return error_response(error, _request_id(request), ctx.endpoint)


async def _http_error(request: Request, error: Exception) -> Response:
    status = getattr(error, "status_code", 500)
    if status == 405:
        mapped: BatchError = BatchError("The HTTP verb is not supported for this resource", code="UnsupportedHttpVerb")
        mapped.status = 405
    else:
        mapped = NotFound("The requested resource does not exist", code="ResourceNotFound")
    return error_response(mapped, _request_id(request), request.app.state.ctx.endpoint)


async def _store_unavailable(request: Request, error: Exception) -> Response:
    """The state store is down, restarting or loading: 503 ServerBusy, which clients retry, instead of a 500."""
    log.warning("%s %s: the state store is unavailable: %s", request.method, request.url.path, error)
    busy = ServerBusy("The server is currently unable to receive requests. Please retry your request.")
    response = error_response(busy, _request_id(request), request.app.state.ctx.endpoint)
    response.headers["Retry-After"] = str(STORE_RETRY_AFTER_SECONDS)
    return response


async def _unexpected(request: Request, error: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    internal = BatchError("The server encountered an internal error. Please retry the request.", code="InternalError")
    internal.status = 500
    return error_response(internal, _request_id(request), request.app.state.ctx.endpoint)


def build_context(settings: ControllerSettings) -> Context:
    """Connect the store, broker and HTTP client for one process."""
    wire = Wire(settings.redis_url, settings.redis_reply_timeout_seconds)
    keys = Keys(settings.key_prefix)
    return Context(
        settings=settings,
        redis=connect(settings.redis_url, settings.redis_reply_timeout_seconds, settings.scheduler_tick_seconds),
        wire=wire,
        keys=keys,
        transitions=Transitions(wire, keys),
        dispatcher=Dispatcher(
            make_celery(settings.broker, settings.broker_key_prefix, settings.redis_reply_timeout_seconds)
        ),
        http=httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0)),
        storage=AutoStorage(
            settings.auto_storage_connection_string,
            settings.applications_container,
            timedelta(seconds=settings.sas_lifetime_seconds),
        ),
        provider=LocalProvider(settings) if settings.node_provider == "local" else StaticProvider(),
    )


def create_app(settings: ControllerSettings, run_scheduler: bool = True) -> BatchGate:
    """The ASGI app: routes behind the authentication gate, with the scheduler in its lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ctx = build_context(settings)
        app.state.ctx = ctx
        app.state.background = set()
        loops = [asyncio.create_task(resume_purges(ctx))]
        scheduler = Scheduler(ctx)
        if run_scheduler:
            ctx.refill = scheduler.refill
            loops.append(asyncio.create_task(scheduler.run()))
        try:
            yield
        finally:
            for loop in loops + list(app.state.background):
                loop.cancel()
            await asyncio.gather(*loops, *app.state.background, return_exceptions=True)
            if scheduler.leading:
                await asyncio.to_thread(ctx.provider.close)
                await scheduler.resign()
            await ctx.http.aclose()
            await ctx.redis.aclose()
            await ctx.wire.aclose()
            ctx.dispatcher.close()

    app = Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        exception_handlers={
            BatchError: _batch_error,
            StoreConnectionError: _store_unavailable,
            StoreTimeoutError: _store_unavailable,
            404: _http_error,
            405: _http_error,
            Exception: _unexpected,
        },
    )
    return BatchGate(app, settings)
