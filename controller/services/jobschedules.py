"""Job schedules: a job specification that the service turns into jobs, one at a time, on a schedule.

The reconciler creates the next job (`<scheduleId>:job-<n>`) once the previous one completed and the
schedule's next run time (from `doNotRunUntil`, then every `recurrenceInterval`) has come; a schedule
without a recurrence, or past `doNotRunAfter`, completes after its last job. An auto pool with
`poolLifetimeOption` `jobschedule` is created with the first job and shared by the later ones.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from controller import render
from controller.api.odata import ListOptions
from controller.api.validation import error_from_validation
from controller.context import Context
from controller.domain.clock import iso, new_etag, now, parse_duration, parse_iso
from controller.domain.ids import key_of
from controller.errors import BatchError, Conflict, NotFound, condition_not_met
from controller.render import Record
from controller.schemas.jobs import AutoPoolSpecification, JobCreate, JobScheduleCreate, JobScheduleUpdate, PoolInfo
from controller.services import autopools, jobs, tasks
from controller.services.records import Page, changed_spec, load_or_404, new_record, page
from controller.store import reads

log = logging.getLogger(__name__)

UPDATE_TRIES = 5
"""How often an update is tried against a schedule that the reconciler changes at the same moment."""

SPEC_CHECK_ID = "schedule-job"
"""A valid job id the job specification is checked with (a schedule's job ids hold a colon)."""


def schedule_url(endpoint: str, schedule_id: str) -> str:
    """Absolute URL of a job schedule."""
    return f"{endpoint}/jobschedules/{schedule_id}"


def _job_body(spec: dict[str, Any], job_id: str) -> JobCreate:
    """The job a schedule creates, from its job specification."""
    body = JobCreate.model_validate({**spec["jobSpecification"], "id": SPEC_CHECK_ID})
    return body.model_copy(update={"id": job_id})


def _check_job_specification(job_specification: dict[str, Any]) -> None:
    """400 when the schedule's job specification would not make a valid job."""
    try:
        JobCreate.model_validate({**job_specification, "id": SPEC_CHECK_ID})
    except ValidationError as error:
        raise error_from_validation(error) from error


async def create_schedule(ctx: Context, body: JobScheduleCreate) -> Record:
    """Create a job schedule; 400 when its job specification is not a valid job, 409 JobScheduleExists."""
    _check_job_specification(body.job_specification)
    key, stamp = key_of(body.id), iso(now())
    until = body.schedule.do_not_run_until
    first = max(until.timestamp(), time.time()) if until else time.time()
    fields = {**new_record(body, body.id, stamp), "next_run": str(int(first * 1000)), "count": "0"}
    existing = await ctx.transitions.create(ctx.keys.job_schedule(key), ctx.keys.job_schedules(), key, fields)
    if existing is not None:
        raise Conflict(f"The specified job schedule already exists: {existing}", code="JobScheduleExists")
    await ctx.wake_scheduler()
    return fields


async def get_schedule(ctx: Context, schedule_id: str) -> Record:
    """A job schedule's record; 404 JobScheduleNotFound."""
    message = f"The specified job schedule does not exist: {schedule_id}"
    return await load_or_404(ctx.wire, ctx.keys.job_schedule(key_of(schedule_id)), "JobScheduleNotFound", message)


def render_schedule(record: Record, endpoint: str) -> dict[str, Any]:
    """A job schedule as BatchJobSchedule JSON."""
    spec = json.loads(record["spec"])
    execution: dict[str, Any] = {}
    if record.get("next_run") and record["state"] == "active":
        with contextlib.suppress(OverflowError, ValueError, OSError):
            execution["nextRunTime"] = iso(datetime.fromtimestamp(int(record["next_run"]) / 1000, UTC))
    if record.get("recent_job"):
        execution["recentJob"] = {"id": record["recent_job"], "url": render.job_url(endpoint, record["recent_job"])}
    if record.get("end"):
        execution["endTime"] = record["end"]
    return {
        **spec,
        "id": record["id"],
        **render.common(record, schedule_url(endpoint, record["id"])),
        "executionInfo": execution,
    }


async def list_schedules(ctx: Context, options: ListOptions) -> Page:
    """A page of job schedules in id order."""
    return await page(
        ctx.wire, ctx.keys.job_schedules(), ctx.keys.job_schedule, lambda r: render_schedule(r, ctx.endpoint), options
    )


async def list_schedule_jobs(ctx: Context, schedule_id: str, options: ListOptions) -> Page:
    """A page of the jobs a schedule created."""
    record = await get_schedule(ctx, schedule_id)
    return await page(
        ctx.wire, ctx.keys.schedule_jobs(record["key"]), ctx.keys.job, lambda r: render.job(r, ctx.endpoint), options
    )


def next_run_after_change(schedule: dict[str, Any], last_run_ms: int | None, now_ms: int) -> str:
    """When a schedule whose `schedule` was just set creates its next job (epoch ms), "" for never.

    A schedule that has not run yet runs at `doNotRunUntil`, else now. One that has runs again a
    `recurrenceInterval` after its last run (not before `doNotRunUntil`); without an interval only
    a `doNotRunUntil` later than its last run makes it run once more.
    """
    until = int(parse_iso(schedule["doNotRunUntil"]).timestamp() * 1000) if schedule.get("doNotRunUntil") else None
    if last_run_ms is None:
        return str(max(until, now_ms) if until is not None else now_ms)
    interval = parse_duration(schedule.get("recurrenceInterval") or "")
    if interval is None:
        return str(max(until, now_ms)) if until is not None and until > last_run_ms else ""
    following = first_due(last_run_ms, interval, now_ms)
    return str(max(following, until) if until is not None else following)


def first_due(last_run_ms: int, interval: timedelta, now_ms: int) -> int:
    """The first recurrence after `last_run_ms` that is not already past: missed ones are skipped, not caught up."""
    step = max(1, int(interval.total_seconds() * 1000))
    following = last_run_ms + step
    if following >= now_ms:
        return following
    return following + -(-(now_ms - following) // step) * step


def window_missed(due_ms: int, start_window: timedelta | None, now_ms: int) -> bool:
    """Whether a run due at `due_ms` can no longer start: its `startWindow` has passed (the previous job ran on,
    or no scheduler ran). Without a window a run may start any time after it is due."""
    return start_window is not None and now_ms > due_ms + int(start_window.total_seconds() * 1000)


async def update_schedule(
    ctx: Context, schedule_id: str, update: JobScheduleUpdate, if_etag: str | None = None
) -> Record:
    """Change a schedule's properties (PATCH, or PUT with every property given); jobs made later follow them.

    The change is applied only to the schedule as it was read (its ETag), and read again when the
    reconciler made a job or changed its state meanwhile; with `if_etag`, only to the schedule with that ETag.
    """
    if update.job_specification is not None:
        _check_job_specification(update.job_specification)
    for _ in range(UPDATE_TRIES):
        record = await get_schedule(ctx, schedule_id)
        if record["state"] not in ("active", "disabled"):
            raise _state_conflict(record["state"])
        if if_etag is not None and record["etag"] != if_etag:
            raise condition_not_met()
        result = await _update_as_read(ctx, record, _updated_fields(record, update))
        if result[0] != "state":
            _check_result(result, record["id"])
            await ctx.wake_scheduler()
            return await get_schedule(ctx, schedule_id)
    raise Conflict("The job schedule kept changing; retry the request", code="OperationInvalidForCurrentState")


async def _update_as_read(ctx: Context, record: Record, fields: dict[str, str]) -> list[str]:
    """Set fields of the schedule only while it is as `record` read it (its ETag); the status list."""
    return await ctx.transitions.update_if(ctx.keys.job_schedule(record["key"]), "etag", record["etag"], fields)


def _updated_fields(record: Record, update: JobScheduleUpdate) -> dict[str, str]:
    """The store fields of a schedule after `update`."""
    stamp = iso(now())
    fields = {"spec": changed_spec(record, update.wire()), "modified": stamp, "etag": new_etag()}
    if update.schedule is not None:
        now_ms = int(time.time() * 1000)
        last_run = int(record["last_run"]) if record.get("last_run") else None
        if last_run is None and int(record.get("count", "0")) > 0:
            last_run = now_ms
        fields["next_run"] = next_run_after_change(update.schedule.wire(), last_run, now_ms)
    return fields


async def _set_state(
    ctx: Context, record: Record, expected: str, state: str, check: str = "state", **extra: str
) -> None:
    """Move the schedule to `state` if its `check` field (its state, or its etag) holds one of `expected`."""
    stamp = iso(now())
    fields = {"state": state, "pstate": record["state"], "pstt": record["stt"], "stt": stamp, "modified": stamp}
    fields.update({**extra, "etag": new_etag()})
    result = await ctx.transitions.update_if(ctx.keys.job_schedule(record["key"]), check, expected, fields)
    _check_result(result, record["id"])


def _check_result(result: list[str], schedule_id: str) -> None:
    """404 or 409 for an update_if that did not change the schedule."""
    if result[0] == "missing":
        raise NotFound(f"The specified job schedule does not exist: {schedule_id}", code="JobScheduleNotFound")
    if result[0] == "state":
        raise _state_conflict(result[1])


def _state_conflict(state: str) -> Conflict:
    """409 for an operation a schedule in `state` does not allow."""
    codes = {"completed": "JobScheduleCompleted", "terminating": "JobScheduleBeingTerminated"}
    codes.update({"deleting": "JobScheduleBeingDeleted", "disabled": "JobScheduleDisabled"})
    code = codes.get(state, "OperationInvalidForCurrentState")
    return Conflict(f"The operation is not allowed on a job schedule in state {state}", code=code)


async def disable_schedule(ctx: Context, schedule_id: str) -> None:
    """Stop creating jobs (the current job runs on)."""
    await _set_state(ctx, await get_schedule(ctx, schedule_id), "active", "disabled")


async def enable_schedule(ctx: Context, schedule_id: str) -> None:
    """Create jobs again."""
    await _set_state(ctx, await get_schedule(ctx, schedule_id), "disabled", "active")
    await ctx.wake_scheduler()


async def terminate_schedule(ctx: Context, schedule_id: str) -> Record:
    """Complete the schedule; its current job is terminated with reason TerminateJobSchedule."""
    record = await get_schedule(ctx, schedule_id)
    await _set_state(ctx, record, "active,disabled", "terminating")
    await _end_active_job(ctx, record)
    await _set_state(ctx, await get_schedule(ctx, schedule_id), "terminating", "completed", end=iso(now()))
    return await get_schedule(ctx, schedule_id)


async def _end_active_job(ctx: Context, record: Record) -> None:
    if record.get("active_job"):
        try:
            await jobs.terminate_job(ctx, record["active_job"], "TerminateJobSchedule")
        except (Conflict, NotFound) as ended:
            log.info("job schedule %s: job %s already ended: %s", record["id"], record["active_job"], ended.message)


async def delete_schedule(ctx: Context, schedule_id: str) -> None:
    """Delete the schedule with the jobs it created."""
    record = await get_schedule(ctx, schedule_id)
    await _set_state(ctx, record, "active,disabled,completed,terminating", "deleting")
    for job_key in await reads.members(ctx.wire, ctx.keys.schedule_jobs(record["key"])):
        try:
            purge = await jobs.delete_job(ctx, job_key)
            if purge is not None:
                await purge
        except (Conflict, NotFound) as gone:
            log.info("job schedule %s: job %s not deleted: %s", record["id"], job_key, gone.message)
    await ctx.redis.unlink(ctx.keys.job_schedule(record["key"]), ctx.keys.schedule_jobs(record["key"]))
    await ctx.redis.zrem(ctx.keys.job_schedules(), record["key"])
    log.info("job schedule %s deleted", record["id"])


async def run_schedules(ctx: Context) -> None:
    """Create each active schedule's next job when it is due and the previous one completed."""
    for key in await reads.members(ctx.wire, ctx.keys.job_schedules()):
        record = await reads.record(ctx.wire, ctx.keys.job_schedule(key))
        if record and record["state"] == "active" and not await _job_running(ctx, record):
            await _next_run(ctx, record)


async def _job_running(ctx: Context, record: Record) -> bool:
    """True while the schedule's current job has not completed."""
    if not record.get("active_job"):
        return False
    state = await ctx.redis.hget(ctx.keys.job(key_of(record["active_job"])), "state")
    return state is not None and state not in ("completed", "deleting")


async def _next_run(ctx: Context, record: Record) -> None:
    spec = json.loads(record["spec"])
    schedule = spec.get("schedule") or {}
    after = parse_iso(schedule["doNotRunAfter"]).timestamp() if schedule.get("doNotRunAfter") else None
    if not record.get("next_run") or (after is not None and time.time() > after):
        try:
            await _set_state(ctx, record, record["etag"], "completed", check="etag", end=iso(now()), active_job="")
        except (Conflict, NotFound):
            return  # changed or deleted meanwhile: the next pass decides again
        log.info("job schedule %s completed", record["id"])
        return
    due, now_ms = int(record["next_run"]), int(time.time() * 1000)
    if now_ms < due:
        return
    interval = parse_duration(schedule.get("recurrenceInterval") or "")
    following = str(first_due(due, interval, now_ms)) if interval else ""
    if window_missed(due, parse_duration(schedule.get("startWindow") or ""), now_ms):
        skipped = {"next_run": following, "etag": new_etag()}
        if (await _update_as_read(ctx, record, skipped))[0] == "ok":
            missed = iso(datetime.fromtimestamp(due / 1000, UTC))
            log.info("job schedule %s: the run due at %s missed its start window", record["id"], missed)
        return
    count = int(record.get("count", "0")) + 1
    job_id = f"{record['id']}:job-{count}"
    run = {"count": str(count), "active_job": job_id, "recent_job": job_id, "next_run": following}
    run.update({"last_run": str(due), "etag": new_etag()})
    if (await _update_as_read(ctx, record, run))[0] != "ok":
        return  # changed or deleted meanwhile: the next pass decides again
    await _create_job(ctx, record, _job_body(spec, job_id))


async def _create_job(ctx: Context, record: Record, body: JobCreate) -> None:
    """Create one job of the schedule (on the schedule's auto pool when its lifetime is the schedule's)."""
    auto = body.pool_info.auto_pool_specification
    failure = None
    if auto is not None and auto.pool_lifetime_option == "jobschedule":
        pool_id, failure = await _schedule_pool(ctx, record, auto)
        body = body.model_copy(update={"pool_info": PoolInfo(pool_id=pool_id)})
    job = await jobs.create_job(ctx, body, marks={"schedule": record["key"]})
    await ctx.redis.zadd(ctx.keys.schedule_jobs(record["key"]), {job["key"]: 0})
    if failure is not None:
        await autopools.fail_job(ctx, job, *failure)
    elif body.job_manager_task is not None:
        try:
            await tasks.add_job_manager(ctx, job["id"], body.job_manager_task)
        except BatchError as refused:
            log.warning("job schedule %s: job %s not created: %s", record["id"], job["id"], refused.message)
    log.info("job schedule %s created job %s", record["id"], job["id"])


async def _schedule_pool(
    ctx: Context, record: Record, auto: AutoPoolSpecification
) -> tuple[str, tuple[str, str] | None]:
    """The schedule's auto pool, created with its first job; (pool id, the creation failure if any)."""
    if record.get("pool"):
        return record["pool"], None
    pool_id = autopools.auto_pool_id(auto)
    failure = await autopools.create_pool(ctx, pool_id, auto, {"schedule": record["key"]})
    if failure is None:
        await ctx.redis.hset(ctx.keys.job_schedule(record["key"]), "pool", pool_id)
    return pool_id, failure
