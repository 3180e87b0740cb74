"""Job use cases: create, read, list, terminate, delete."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from controller import render
from controller.api.odata import ListOptions
from controller.context import Context
from controller.domain.clock import deadline_ms, iso, new_etag, now, parse_iso
from controller.domain.ids import key_of
from controller.domain.lifecycle import task_ended_failure
from controller.errors import Conflict, NotFound, condition_not_met, invalid_property
from controller.render import Record
from controller.schemas.jobs import JobCreate, JobReplace, JobUpdate, PoolInfo
from controller.services.attempts import stop_attempts
from controller.services.autopools import auto_pool_id, create_for_job
from controller.services.records import Page, changed_spec, load_or_404, new_record, page
from controller.store import reads

log = logging.getLogger(__name__)

PURGE_BATCH = 500
_PRIORITY_SPAN = 10**12


def job_order(priority: int, seq: int) -> str:
    """Scheduling order of a job's queue on its pool: higher priority first, then creation order."""
    return str((1000 - priority) * _PRIORITY_SPAN + seq)


def job_not_found(job_id: str) -> NotFound:
    """404 JobNotFound."""
    return NotFound(f"The specified job does not exist: {job_id}", code="JobNotFound")


def _job_task_fields(body: JobCreate) -> dict[str, str]:
    """`prep` (`wait` | `nowait`) when the job has a preparation task, `release` when it has a release task."""
    fields = {}
    if body.job_preparation_task is not None:
        fields["prep"] = "nowait" if body.job_preparation_task.wait_for_success is False else "wait"
    if body.job_release_task is not None:
        fields["release"] = "1"
    return fields


async def create_job(ctx: Context, body: JobCreate, marks: dict[str, str] | None = None) -> Record:
    """Create a job (with the store fields `marks`); 409 JobExists when an id equal ignoring case exists."""
    job_key = key_of(body.id)
    auto = body.pool_info.auto_pool_specification
    if auto is not None and auto.pool_lifetime_option != "job":
        reason = "poolLifetimeOption jobschedule may be applied only to job schedules, not to jobs"
        raise invalid_property("poolInfo.autoPoolSpecification.poolLifetimeOption", reason)
    pool_id = auto_pool_id(auto) if auto is not None else str(body.pool_info.pool_id)
    stamp, seq = iso(now()), await ctx.redis.incr(ctx.keys.seq())
    fields = {
        **new_record(body, body.id, stamp),
        "pool": key_of(pool_id),
        "pool_id": pool_id,
        "order": job_order(body.priority or 0, seq),
        "on_all_complete": body.on_all_tasks_complete or "noaction",
        "max_retries": str((body.constraints.max_task_retry_count if body.constraints else None) or 0),
        "max_parallel": str(body.max_parallel_tasks or -1),
        **_job_task_fields(body),
        **(marks or {}),
        "n_active": "0",
        "n_running": "0",
        "n_completed": "0",
        "n_succeeded": "0",
        "n_failed": "0",
    }
    existing = await ctx.transitions.create(ctx.keys.job(job_key), ctx.keys.jobs(), job_key, fields)
    if existing is not None:
        raise Conflict(f"The specified job already exists: {existing}", code="JobExists")
    if auto is not None:
        await create_for_job(ctx, fields, auto)
    deadline = deadline_ms(parse_iso(stamp), body.constraints.max_wall_clock_time if body.constraints else None)
    if deadline is not None:
        await ctx.redis.zadd(ctx.keys.job_deadlines(), {job_key: deadline})
    return fields


async def get_job(ctx: Context, job_id: str) -> Record:
    """A job's record; 404 JobNotFound."""
    return await load_or_404(
        ctx.wire, ctx.keys.job(key_of(job_id)), "JobNotFound", f"The specified job does not exist: {job_id}"
    )


async def task_counts(ctx: Context, job_id: str) -> dict[str, Any]:
    """The job's task counts by state, kept exact by the transition scripts, and its slot counts.

    Slot counts equal task counts except for running tasks, whose slots are summed over their attempts
    (a task's requiredSlots counts only while it runs).
    """
    record = await get_job(ctx, job_id)
    counts = {name: int(record.get(f"n_{name}", "0")) for name in ("active", "running", "completed")}
    counts.update({"succeeded": int(record.get("n_succeeded", "0")), "failed": int(record.get("n_failed", "0"))})
    attempts = await reads.set_members(ctx.wire, ctx.keys.job_attempts(record["key"]))
    slots = await reads.fields(ctx.wire, attempts, "slots", "state")
    running_slots = sum(int(row[0] or 1) for row in slots if row[1] in ("running", "stopping"))
    return {"taskCounts": counts, "taskSlotCounts": {**counts, "running": running_slots}}


async def list_jobs(ctx: Context, options: ListOptions) -> Page:
    """A page of jobs in id order."""
    return await page(ctx.wire, ctx.keys.jobs(), ctx.keys.job, lambda r: render.job(r, ctx.endpoint), options)


async def expire_jobs(ctx: Context) -> None:
    """Jobs whose maxWallClockTime ran out are terminated with reason MaxWallClockTimeExpiry."""
    due = await reads.due(ctx.wire, ctx.keys.job_deadlines(), time.time() * 1000, 100)
    for job_key in due:
        await ctx.redis.zrem(ctx.keys.job_deadlines(), job_key)
        record = await reads.record(ctx.wire, ctx.keys.job(job_key))
        if record and record["state"] in ("active", "disabling", "disabled", "enabling"):
            failure = json.dumps(task_ended_failure("the job reached its maxWallClockTime").model_dump(mode="json"))
            etag, reason = new_etag(), "MaxWallClockTimeExpiry"
            await ctx.transitions.end_job(job_key, record["pool"], "completed", iso(now()), etag, reason, failure)
            log.info("job %s reached its maxWallClockTime and was terminated", record["id"])


async def terminate_job(ctx: Context, job_id: str, reason: str) -> Record:
    """Terminate a job: running tasks are stopped and fail with TaskEnded, queued tasks stay active."""
    record = await get_job(ctx, job_id)
    failure = json.dumps(task_ended_failure(f"the job was terminated ({reason})").model_dump(mode="json"))
    result = await ctx.transitions.end_job(
        record["key"], record["pool"], "completed", iso(now()), new_etag(), reason, failure
    )
    _raise_for_end(result, job_id)
    return await get_job(ctx, job_id)


DISABLEABLE_STATES = "active,disabling,disabled"
JOB_STATE_CODES = {
    "completed": "JobCompleted",
    "terminating": "JobBeingTerminated",
    "deleting": "JobBeingDeleted",
    "disabled": "JobDisabled",
}


def _state_conflict(state: str, fallback: str = "JobNotActive") -> Conflict:
    code = JOB_STATE_CODES.get(state, fallback)
    return Conflict(f"The operation is not allowed on a job in state {state}", code=code)


async def _set_state(ctx: Context, record: Record, expected: str, state: str) -> None:
    """Move the job to `state` if it is in one of `expected`; 409 otherwise."""
    stamp = iso(now())
    fields = {"state": state, "pstate": record["state"], "pstt": record["stt"], "stt": stamp, "modified": stamp}
    result = await ctx.transitions.update_if(
        ctx.keys.job(record["key"]), "state", expected, {**fields, "etag": new_etag()}
    )
    if result[0] == "missing":
        raise job_not_found(record["id"])
    if result[0] == "state":
        raise _state_conflict(result[1])


UPDATABLE_STATES = "active,disabling,disabled,enabling"


async def update_job(ctx: Context, job_id: str, patch: JobUpdate, if_etag: str | None = None) -> Record:
    """Change a job's updatable properties (PATCH): omitted ones keep their values; only while its ETag is
    `if_etag`, when given."""
    record = await get_job(ctx, job_id)
    _check_update(record, patch)
    if patch.pool_info is not None and await ctx.redis.scard(ctx.keys.job_attempts(record["key"])):
        raise Conflict("The pool of a job can be changed only when none of its tasks runs", code="JobNotDisabled")
    fields = {**_update_fields(record, patch), "spec": changed_spec(record, patch.wire())}
    stamp = iso(now())
    fields.update({"modified": stamp, "etag": new_etag()})
    result = await ctx.transitions.update_if(ctx.keys.job(record["key"]), "state", UPDATABLE_STATES, fields, if_etag)
    if result[0] == "state":
        raise _state_conflict(result[1])
    if result[0] == "etag":
        raise condition_not_met()
    await _after_update(ctx, record, fields, patch)
    return await get_job(ctx, job_id)


def _check_update(record: Record, patch: JobUpdate) -> None:
    if patch.on_all_tasks_complete == "noaction" and record.get("on_all_complete") == "terminatejob":
        raise invalid_property("onAllTasksComplete", "terminatejob cannot be changed back to noaction")
    if patch.pool_info is not None and patch.pool_info.auto_pool_specification is not None:
        raise invalid_property("poolInfo", "a job's pool can be changed only to an existing pool")
    if patch.pool_info is not None and record["state"] != "disabled":
        raise Conflict("The pool of a job can be changed only while the job is disabled", code="JobNotDisabled")


def _update_fields(record: Record, patch: JobUpdate) -> dict[str, str]:
    """The store fields a patch changes."""
    fields: dict[str, str] = {}
    if patch.priority is not None:
        fields["order"] = job_order(patch.priority, int(record["order"]) % _PRIORITY_SPAN)
    if patch.max_parallel_tasks is not None:
        fields["max_parallel"] = str(patch.max_parallel_tasks)
    if patch.on_all_tasks_complete is not None:
        fields["on_all_complete"] = patch.on_all_tasks_complete
    if patch.constraints is not None:
        fields["max_retries"] = str(patch.constraints.max_task_retry_count or 0)
    if patch.pool_info is not None and patch.pool_info.pool_id is not None:
        fields["pool"], fields["pool_id"] = key_of(patch.pool_info.pool_id), patch.pool_info.pool_id
    return fields


async def _after_update(ctx: Context, record: Record, fields: dict[str, str], patch: JobUpdate) -> None:
    """Re-rank the job on its pool, move its deadline, and complete it when it now terminates on no tasks left."""
    if "order" in fields:
        await ctx.redis.zadd(ctx.keys.pool_jobs(record["pool"]), {record["key"]: float(fields["order"])}, xx=True)
    if patch.constraints is not None:
        await _set_deadline(ctx, record, patch.constraints.max_wall_clock_time)
    await complete_if_all_done(ctx, record["id"])
    await ctx.wake_scheduler()


async def _set_deadline(ctx: Context, record: Record, limit: str | None) -> None:
    """The job's wall clock deadline after new constraints: its creation plus `limit`, or none without one."""
    deadline = deadline_ms(parse_iso(record["created"]), limit)
    if deadline is None:
        await ctx.redis.zrem(ctx.keys.job_deadlines(), record["key"])
    else:
        await ctx.redis.zadd(ctx.keys.job_deadlines(), {record["key"]: deadline})


async def replace_job(ctx: Context, job_id: str, body: JobReplace, if_etag: str | None = None) -> Record:
    """Replace a job's updatable properties (PUT): omitted ones take their defaults."""
    record = await get_job(ctx, job_id)
    current = PoolInfo.model_validate(json.loads(record["spec"])["poolInfo"])
    return await update_job(ctx, job_id, body.as_update(current, record["pool_id"]), if_etag)


async def complete_if_all_done(ctx: Context, job_id: str) -> None:
    """End an active job whose onAllTasksComplete is terminatejob once none of its tasks is active or running.

    The finish script checks this when a task completes; this covers the other ways a job gets there
    (the option set by a patch, a task terminated or deleted, a job enabled again).
    """
    record = await reads.record(ctx.wire, ctx.keys.job(key_of(job_id)))
    if record.get("on_all_complete") != "terminatejob" or record.get("state") != "active":
        return
    if record.get("n_active") == "0" and record.get("n_running") == "0":
        with contextlib.suppress(Conflict):
            await terminate_job(ctx, record["id"], "AllTasksComplete")


async def disable_job(ctx: Context, job_id: str, option: str) -> Record:
    """Stop scheduling the job's tasks; its running tasks are requeued, terminated or left to finish (`option`)."""
    record = await get_job(ctx, job_id)
    await _set_state(ctx, record, DISABLEABLE_STATES, "disabling")
    await ctx.redis.zrem(ctx.keys.pool_jobs(record["pool"]), record["key"])
    attempts = await reads.set_members(ctx.wire, ctx.keys.job_attempts(record["key"]))
    await stop_attempts(ctx, attempts, option, "its job was disabled")
    await _set_state(ctx, await get_job(ctx, job_id), "disabling", "disabled")
    log.info("job %s disabled (%s)", record["id"], option)
    return await get_job(ctx, job_id)


async def enable_job(ctx: Context, job_id: str) -> Record:
    """Schedule a disabled job's tasks again."""
    record = await get_job(ctx, job_id)
    if record["state"] not in ("disabled", "disabling"):
        raise Conflict(f"The job is {record['state']}, not disabled", code="OperationInvalidForCurrentState")
    await _set_state(ctx, record, "disabled,disabling", "active")
    await ctx.redis.zadd(ctx.keys.pool_jobs(record["pool"]), {record["key"]: float(record["order"])}, nx=True)
    await complete_if_all_done(ctx, record["id"])
    await ctx.wake_scheduler()
    log.info("job %s enabled", record["id"])
    return await get_job(ctx, job_id)


async def end_with_manager(ctx: Context, job_id: str) -> None:
    """The job manager completed with killJobOnCompletion: the job terminates with reason JMComplete."""
    try:
        await terminate_job(ctx, job_id, "JMComplete")
    except Conflict as refused:
        log.info("job %s: not ended by its job manager: %s", job_id, refused.message)


async def apply_job_action(ctx: Context, job_id: str, action: str) -> None:
    """Act on a completed task's exit jobAction (`disable` or `terminate`) if the job's onTaskFailure says so."""
    record = await get_job(ctx, job_id)
    if json.loads(record["spec"]).get("onTaskFailure") != "performexitoptionsjobaction":
        return
    try:
        if action == "terminate":
            await terminate_job(ctx, job_id, "TaskFailed")
        elif action == "disable":
            await disable_job(ctx, job_id, "requeue")
    except Conflict as refused:
        log.info("job %s: task exit action %s not applied: %s", job_id, action, refused.message)


async def delete_job(ctx: Context, job_id: str) -> asyncio.Task[None] | None:
    """Begin deleting a job; its tasks are removed in the background, then the job itself.

    A job whose release tasks must run first is removed by the reconciler once they ran (None then).
    """
    record = await get_job(ctx, job_id)
    failure = json.dumps(task_ended_failure("the job was deleted").model_dump(mode="json"))
    result = await ctx.transitions.end_job(
        record["key"], record["pool"], "deleting", iso(now()), new_etag(), "", failure
    )
    _raise_for_end(result, job_id)
    if result[1:] == ["releasing"]:
        return None
    return asyncio.create_task(purge_job(ctx, record["key"]))


def _raise_for_end(result: list[str], job_id: str) -> None:
    if result[0] == "nojob":
        raise job_not_found(job_id)
    if result[0] == "state":
        code = {"completed": "JobCompleted", "deleting": "JobBeingDeleted"}.get(result[1], "JobNotActive")
        raise Conflict(f"The operation is not allowed on a job in state {result[1]}", code=code)


async def purge_job(ctx: Context, job_key: str) -> None:
    """Delete a deleting job's tasks in batches, then the job; safe to run again after a crash."""
    keys = ctx.keys
    while members := await reads.members(ctx.wire, keys.job_tasks(job_key), 0, PURGE_BATCH - 1):
        async with ctx.redis.pipeline(transaction=False) as pipe:
            pipe.unlink(*[keys.task(job_key, member) for member in members])
            pipe.zrem(keys.job_tasks(job_key), *members)
            await pipe.execute()
    await ctx.redis.unlink(keys.job_queue(job_key), keys.job_attempts(job_key), keys.job_tasks(job_key))
    dependents = [key async for key in ctx.redis.scan_iter(match=keys.job_dependents(job_key) + "*", count=1000)]
    for start in range(0, len(dependents), PURGE_BATCH):
        await ctx.redis.unlink(*dependents[start : start + PURGE_BATCH])
    await ctx.redis.unlink(
        keys.job_dependency_states(job_key),
        keys.job_prep_states(job_key),
        keys.job_prep_failed(job_key),
        keys.job_prep_info(job_key),
        keys.job_release_info(job_key),
        keys.job_releasing(job_key),
    )
    await ctx.redis.unlink(keys.job(job_key))
    await ctx.redis.zrem(keys.jobs(), job_key)
    log.info("job %s deleted", job_key)


async def resume_purges(ctx: Context) -> None:
    """Finish deletions a previous controller process started (those waiting for releases are the reconciler's)."""
    releasing = set(await reads.set_members(ctx.wire, ctx.keys.terminating_jobs()))
    for job_key in await reads.members(ctx.wire, ctx.keys.jobs()):
        if job_key not in releasing and await ctx.redis.hget(ctx.keys.job(job_key), "state") == "deleting":
            await purge_job(ctx, job_key)
