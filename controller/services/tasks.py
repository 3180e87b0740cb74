"""Task use cases: add one, add a collection, read, list."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from controller import render
from controller.api.odata import ListOptions
from controller.api.validation import error_from_validation
from controller.context import Context
from controller.domain.clock import iso, new_etag, now
from controller.domain.dependencies import check_dependencies, dependency_names, integer_id
from controller.domain.ids import key_of
from controller.domain.lifecycle import task_ended_failure
from controller.errors import BatchError, BodyTooLarge, Conflict, NotFound, condition_not_met, invalid_property
from controller.render import Record
from controller.schemas.jobs import JobManagerTask
from controller.schemas.tasks import TaskCreate, TaskReplace
from controller.services.applications import catalogue, invalid_references, resolve
from controller.services.jobs import complete_if_all_done, delete_job, get_job, job_not_found
from controller.services.records import Page, load, load_or_404, new_record, page
from controller.storage import PackageVersion
from controller.store import reads
from nodeagent.messages import FailureInfo

log = logging.getLogger(__name__)

MAX_COLLECTION = 100
RESERVED_IDS = (
    ("jobPreparationTask", "jobpreparation", "TaskIdSameAsJobPreparationTask"),
    ("jobReleaseTask", "jobrelease", "TaskIdSameAsJobReleaseTask"),
)


@dataclass(frozen=True)
class AddResult:
    """The outcome of adding one task: its record, or the error that refused it."""

    task_id: str
    record: Record | None = None
    error: BatchError | None = None


def _reserved_id_error(job_spec: dict[str, Any], task_id: str) -> BatchError | None:
    for prop, default_id, code in RESERVED_IDS:
        special = job_spec.get(prop)
        if special is not None and key_of(special.get("id") or default_id) == key_of(task_id):
            return Conflict(f"The task id {task_id} is the id of the job's {prop}", code=code)
    return None


def _dependency_fields(body: TaskCreate) -> dict[str, str]:
    """The store's dependency fields: `num` for an integer id, `_deps` (the names waited for) when it depends."""
    fields = {}
    number = integer_id(body.id)
    if number is not None:
        fields["num"] = str(number)
    if body.depends_on is not None:
        fields["_deps"] = ",".join(dependency_names(body.depends_on.wire()))
    return fields


def _task_fields(job: Record, body: TaskCreate, stamp: str) -> dict[str, str]:
    constraint = body.constraints.max_task_retry_count if body.constraints else None
    instances = body.multi_instance_settings.number_of_instances or 1 if body.multi_instance_settings else None
    return {
        **_dependency_fields(body),
        **({"instances": str(instances)} if instances is not None else {}),
        **new_record(body, body.id, stamp),
        "job": job["id"],
        "pool_id": job["pool_id"],
        "slots": str(body.required_slots or 1),
        "affinity": body.affinity_info.affinity_id.split(":", 1)[-1] if body.affinity_info else "",
        "retries": "0",
        "requeues": "0",
        "max_retries": str(constraint if constraint is not None else job.get("max_retries", "0")),
    }


def _check_container(pool: Record | None, body: TaskCreate) -> BatchError | None:
    """containerSettings must be given exactly when the (existing) pool runs containers."""
    if pool is None:
        return None
    vm = json.loads(pool["spec"]).get("virtualMachineConfiguration") or {}
    runs_containers = bool(vm.get("containerConfiguration"))
    if runs_containers == (body.container_settings is not None):
        return None
    reason = "is required on a pool with containerConfiguration" if runs_containers else "needs a container pool"
    return invalid_property("containerSettings", f"containerSettings {reason}")


def _check_dependencies(job_spec: dict[str, Any], body: TaskCreate) -> BatchError | None:
    if body.depends_on is None:
        return None
    if not job_spec.get("usesTaskDependencies"):
        return BatchError(
            "The job does not use task dependencies, so a task may not depend on others",
            code="TaskDependenciesNotSpecifiedOnJob",
        )
    return check_dependencies(body.depends_on.wire())


def _check_multi_instance(body: TaskCreate) -> BatchError | None:
    """A multi-instance task takes one slot on each of its nodes."""
    if body.multi_instance_settings is not None and (body.required_slots or 1) != 1:
        return invalid_property("requiredSlots", "a multi-instance task must have requiredSlots 1")
    return None


def _check_exit_conditions(job_spec: dict[str, Any], body: TaskCreate) -> BatchError | None:
    """A jobAction needs a job whose onTaskFailure is performexitoptionsjobaction."""
    if job_spec.get("onTaskFailure") == "performexitoptionsjobaction" or body.exit_conditions is None:
        return None
    if any(options.job_action is not None for options in body.exit_conditions.all_options()):
        reason = "a jobAction needs the job's onTaskFailure to be performexitoptionsjobaction"
        return invalid_property("exitConditions", reason)
    return None


def _check_packages(known: dict[str, list[PackageVersion]], body: TaskCreate) -> BatchError | None:
    """409 InvalidApplicationPackageReferences when a referenced package version is not uploaded."""
    references = [reference.wire() for reference in body.application_package_references or []]
    _, missing = resolve(references, known)
    return invalid_references(missing) if missing else None


async def add_job_manager(ctx: Context, job_id: str, manager: JobManagerTask) -> None:
    """Add a just-created job's manager task: an ordinary task of the job, added first, that may end the job
    and runs alone. A manager the job cannot take undoes the job and is the request's error, as the service
    refuses such a job; a job that completed at once (its auto pool could not be made) gets none."""
    if (await get_job(ctx, job_id))["state"] != "active":
        return
    marks = {
        "jm": "1",
        "kill_job": "0" if manager.kill_job_on_completion is False else "1",
        "exclusive": "0" if manager.run_exclusive is False else "1",
    }
    (result,) = await add_tasks(ctx, job_id, [TaskCreate.model_validate(manager.task_body())], marks)
    if result.error is not None:
        purge = await delete_job(ctx, job_id)
        if purge is not None:
            await purge
        raise result.error


async def add_tasks(
    ctx: Context, job_id: str, bodies: list[TaskCreate], marks: dict[str, str] | None = None
) -> list[AddResult]:
    """Add validated tasks to a job atomically per task (with the store fields `marks`); results in request order."""
    job = await get_job(ctx, job_id)
    job_spec = json.loads(job["spec"])
    pool = await load(ctx.wire, ctx.keys.pool(job["pool"]))
    uses_packages = any(body.application_package_references for body in bodies)
    known = await catalogue(ctx) if uses_packages else {}
    stamp = iso(now())
    results: dict[int, AddResult] = {}
    accepted: list[tuple[int, TaskCreate, dict[str, str]]] = []
    for index, body in enumerate(bodies):
        error = (
            _reserved_id_error(job_spec, body.id)
            or _check_dependencies(job_spec, body)
            or _check_exit_conditions(job_spec, body)
            or _check_multi_instance(body)
            or _check_container(pool, body)
            or _check_packages(known, body)
        )
        if error is not None:
            results[index] = AddResult(body.id, error=error)
        else:
            accepted.append((index, body, {**_task_fields(job, body, stamp), **(marks or {})}))
    if accepted:
        statuses = await _store_tasks(ctx, job, [(body.id, fields) for _, body, fields in accepted])
        for (index, body, fields), existing in zip(accepted, statuses, strict=True):
            if existing:
                error = Conflict(f"The specified task already exists: {existing}", code="TaskExists")
                results[index] = AddResult(body.id, error=error)
            else:
                results[index] = AddResult(body.id, record=fields)
        await ctx.wake_scheduler()
    return [results[index] for index in range(len(bodies))]


async def _store_tasks(ctx: Context, job: Record, tasks: list[tuple[str, dict[str, str]]]) -> list[str]:
    pairs = [(key_of(task_id), fields) for task_id, fields in tasks]
    for _ in range(3):
        deadline = int((time.time() + ctx.settings.task_lifetime_seconds) * 1000)
        result = await ctx.transitions.add_tasks(job["key"], job["pool"], job["order"], pairs, deadline)
        if result[0] == "ok":
            return result[1:]
        if result[0] == "nojob":
            raise job_not_found(job["id"])
        if result[0] == "state":
            raise _job_state_conflict(result[1])
        job = await get_job(ctx, job["id"])
    raise Conflict("The job changed pools while tasks were being added; retry the request")


def _job_state_conflict(state: str) -> Conflict:
    code = {"completed": "JobCompleted", "terminating": "JobBeingTerminated", "deleting": "JobBeingDeleted"}[state]
    return Conflict(f"Tasks cannot be added to a job in state {state}", code=code)


def parse_collection_item(item: Any) -> TaskCreate | AddResult:
    """Validate one addtaskcollection item; an AddResult carries its error."""
    try:
        return TaskCreate.model_validate(item)
    except ValidationError as error:
        task_id = item.get("id", "") if isinstance(item, dict) else ""
        return AddResult(str(task_id), error=error_from_validation(error))


async def add_collection(ctx: Context, job_id: str, items: list[Any]) -> list[AddResult]:
    """addtaskcollection: at most 100 tasks, each accepted or refused on its own."""
    if len(items) > MAX_COLLECTION:
        raise BodyTooLarge(f"A task collection may contain at most {MAX_COLLECTION} tasks")
    parsed = [parse_collection_item(item) for item in items]
    valid = [entry for entry in parsed if isinstance(entry, TaskCreate)]
    added = iter(await add_tasks(ctx, job_id, valid) if valid else await _require_job(ctx, job_id))
    return [entry if isinstance(entry, AddResult) else next(added) for entry in parsed]


async def _require_job(ctx: Context, job_id: str) -> list[AddResult]:
    await get_job(ctx, job_id)
    return []


def task_not_found(task_id: str) -> NotFound:
    """404 TaskNotFound."""
    return NotFound(f"The specified task does not exist: {task_id}", code="TaskNotFound")


async def get_task(ctx: Context, job_id: str, task_id: str) -> Record:
    """A task's record; 404 JobNotFound or TaskNotFound."""
    job = await get_job(ctx, job_id)
    key = ctx.keys.task(job["key"], key_of(task_id))
    return await load_or_404(ctx.wire, key, "TaskNotFound", f"The specified task does not exist: {task_id}")


async def list_tasks(ctx: Context, job_id: str, options: ListOptions, expand_stats: bool = False) -> Page:
    """A page of a job's tasks in id order."""
    job = await get_job(ctx, job_id)
    return await page(
        ctx.wire,
        ctx.keys.job_tasks(job["key"]),
        lambda member: ctx.keys.task(job["key"], member),
        lambda record: render.task(record, ctx.endpoint, expand_stats),
        options,
    )


async def list_subtasks(ctx: Context, job_id: str, task_id: str) -> list[dict[str, Any]]:
    """The subtasks (instances other than the primary) of a multi-instance task's latest run."""
    task = await get_task(ctx, job_id, task_id)
    members = [member for member in task.get("subtasks", "").split(",") if member][1:]
    attempts = await reads.records(ctx.wire, members)
    return [_subtask(ctx, task, attempt) for attempt in attempts if attempt]


def _subtask(ctx: Context, task: Record, attempt: Record) -> dict[str, Any]:
    """One subtask as BatchSubtask JSON."""
    node_id = attempt.get("node_id", "")
    root = f"workitems/{task['job']}/job-1/{task['id']}"
    node = render.node_url(ctx.endpoint, task["pool_id"], node_id)
    live = attempt.get("state") in ("offered", "running", "stopping")
    item: dict[str, Any] = {
        "id": int(attempt.get("subtask", "0")),
        "nodeInfo": {
            "affinityId": node_id,
            "nodeUrl": node,
            "poolId": task["pool_id"],
            "nodeId": node_id,
            "taskRootDirectory": root,
            "taskRootDirectoryUrl": f"{node}/files/{root}",
        },
        "state": "running" if live else "completed",
    }
    if attempt.get("started"):
        item["startTime"] = attempt["started"]
    if not live:
        item["endTime"] = attempt.get("ended") or attempt.get("coord_end") or attempt.get("started", "")
    if attempt.get("coord_exit"):
        item["exitCode"] = int(attempt["coord_exit"])
    if attempt.get("coord_failure"):
        item["failureInfo"] = json.loads(attempt["coord_failure"])
    if not live:
        item["result"] = "failure" if attempt.get("coord_failure") else "success"
    return item


async def terminate_task(ctx: Context, job_id: str, task_id: str) -> None:
    """Terminate a task: a running one is stopped, a queued one completes; both fail with TaskEnded."""
    task = await get_task(ctx, job_id, task_id)
    if task["state"] == "completed":
        raise Conflict("The task has already completed", code="TaskCompleted")
    failure = json.dumps(task_ended_failure("the user terminated the task").model_dump(mode="json"))
    job_key = key_of(task["job"])

    async def close() -> str:
        return (await ctx.transitions.close_task(job_key, task["key"], iso(now()), new_etag(), failure))[0]

    await _once_stopped(ctx, task, failure, close)
    await complete_if_all_done(ctx, task["job"])


async def delete_task(ctx: Context, job_id: str, task_id: str) -> Record:
    """Delete a task: a running one is stopped first. The deleted record (its files are the caller's to remove)."""
    task = await get_task(ctx, job_id, task_id)
    failure = json.dumps(task_ended_failure("the task was deleted").model_dump(mode="json"))

    depends_on = json.loads(task["spec"]).get("dependsOn")
    waits_for = dependency_names(depends_on) if depends_on else []

    async def delete() -> str:
        return await ctx.transitions.delete_task(key_of(task["job"]), task["key"], waits_for)

    if await _once_stopped(ctx, task, failure, delete) == "missing":
        raise task_not_found(task_id)
    log.info("task %s/%s deleted", task["job"], task["id"])
    await complete_if_all_done(ctx, task["job"])
    return task


async def _once_stopped(ctx: Context, task: Record, failure: str, act: Callable[[], Awaitable[str]]) -> str:
    """Stop the task's attempt (it fails with `failure`), then `act` on the task; its status once not "busy"."""
    task_key = ctx.keys.task(key_of(task["job"]), task["key"])
    for _ in range(5):
        attempt = await ctx.redis.hget(task_key, "attempt")
        if attempt:
            await ctx.transitions.stop_attempt(str(attempt), "any", "fail", iso(now()), new_etag(), failure)
        status = await act()
        if status != "busy":
            return status
    raise Conflict("The task is being placed on a node; retry the request")


UNFINISHED_STATES = "active,preparing,running"
"""States in which a task's constraints may still change."""


async def replace_task(
    ctx: Context, job_id: str, task_id: str, body: TaskReplace, if_etag: str | None = None
) -> Record:
    """Replace a task's constraints (PUT); omitted ones take their defaults (retries: the job's); only while the
    task's ETag is `if_etag`, when given.

    The retry limit applies at once, to the running attempt's end too; the wall clock and the
    retention time apply from the task's next attempt.
    """
    task = await get_task(ctx, job_id, task_id)
    job = await get_job(ctx, task["job"])
    spec = json.loads(task["spec"])
    constraints = body.constraints.wire() if body.constraints is not None else {}
    spec.pop("constraints", None)
    if constraints:
        spec["constraints"] = constraints
    retries = constraints.get("maxTaskRetryCount", job.get("max_retries", "0"))
    fields = {"spec": json.dumps(spec), "max_retries": str(retries), "modified": iso(now()), "etag": new_etag()}
    task_key = ctx.keys.task(job["key"], task["key"])
    result = await ctx.transitions.update_if(task_key, "state", UNFINISHED_STATES, fields, if_etag)
    if result[0] == "missing":
        raise task_not_found(task_id)
    if result[0] == "state":
        raise Conflict("The task has completed; its constraints can no longer change", code="TaskCompleted")
    if result[0] == "etag":
        raise condition_not_met()
    return await get_task(ctx, job_id, task_id)


async def reactivate_task(ctx: Context, job_id: str, task_id: str) -> None:
    """Reactivate a failed task: it runs again from retryCount 0."""
    task = await get_task(ctx, job_id, task_id)
    job = await get_job(ctx, task["job"])
    result = await ctx.transitions.reactivate(job["key"], job["pool"], task["key"], iso(now()), new_etag())
    if result[0] == "job":
        raise _job_state_conflict(result[1])
    if result[0] == "state":
        raise Conflict(f"The task is {result[1]}, not completed", code="TaskNotCompleted")
    if result[0] == "succeeded":
        raise Conflict("The task completed successfully and cannot be reactivated", code="TaskSucceeded")
    await ctx.wake_scheduler()


async def expire_tasks(ctx: Context) -> None:
    """Tasks that reached the end of their lifetime (180 days) and have not completed are terminated."""
    due = await reads.due(ctx.wire, ctx.keys.task_deadlines(), time.time() * 1000, 100)
    failure = json.dumps(
        FailureInfo(
            category="usererror", code="TaskLifetimeExceeded", message="The task reached the maximum task lifetime"
        ).model_dump(mode="json")
    )
    for task_key in due:
        await ctx.redis.zrem(ctx.keys.task_deadlines(), task_key)
        task = await reads.record(ctx.wire, task_key)
        if not task or task["state"] == "completed":
            continue
        if task.get("attempt"):
            await ctx.transitions.stop_attempt(task["attempt"], "any", "fail", iso(now()), new_etag(), failure)
        await ctx.transitions.close_task(
            ctx.keys.job_key_of_task(task_key), task["key"], iso(now()), new_etag(), failure
        )
        log.info("task %s/%s reached its lifetime and was terminated", task["job"], task["id"])
