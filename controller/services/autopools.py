"""Auto pools: a pool made from an autoPoolSpecification, living as long as its job or its job schedule.

With `poolLifetimeOption` `job` the pool is created right after its job; with `jobschedule` with the
first job of its schedule, and the schedule's later jobs run on it. Its id is
`<autoPoolIdPrefix>_<guid>`, and it is created through the same path as an added pool, so the node
provider gives it its nodes. A specification the service cannot turn into a pool completes the job
at once with an `executionInfo.schedulingError`. The reconciler deletes an auto pool once its owner
completed or was deleted, unless `keepAlive` is set.
"""

from __future__ import annotations

import json
import logging
import uuid

from pydantic import ValidationError

from controller.api.validation import error_from_validation
from controller.context import Context
from controller.domain.clock import iso, new_etag, now
from controller.domain.ids import key_of
from controller.errors import BatchError, Conflict
from controller.render import Record
from controller.schemas.jobs import AutoPoolSpecification
from controller.schemas.pools import PoolCreate
from controller.services import pools
from controller.services.applications import catalogue, resolve
from controller.store import reads

log = logging.getLogger(__name__)


def auto_pool_id(spec: AutoPoolSpecification) -> str:
    """A fresh auto pool id: the prefix, an underscore and a GUID (the GUID alone without a prefix)."""
    guid = str(uuid.uuid4())
    return f"{spec.auto_pool_id_prefix}_{guid}" if spec.auto_pool_id_prefix else guid


async def create_for_job(ctx: Context, job: Record, spec: AutoPoolSpecification) -> None:
    """Create the job's auto pool; when that fails, complete the job with the scheduling error."""
    failure = await create_pool(ctx, job["pool_id"], spec, {"job": job["key"]})
    if failure is not None:
        await fail_job(ctx, job, *failure)
    else:
        log.info("job %s: auto pool %s created", job["id"], job["pool_id"])


async def create_pool(
    ctx: Context, pool_id: str, spec: AutoPoolSpecification, owner: dict[str, str]
) -> tuple[str, str] | None:
    """Create an auto pool owned by a job or a job schedule (`owner`); the (code, message) when it cannot be."""
    try:
        body = PoolCreate.model_validate({**spec.pool, "id": pool_id})
    except ValidationError as error:
        return "InvalidAutoPoolSettings", error_from_validation(error).message
    missing = await _missing_packages(ctx, body)
    if missing:
        message = f"The auto pool references application packages that do not exist: {', '.join(missing)}"
        return "InvalidApplicationPackageReferencesInAutoPool", message
    try:
        await pools.create_pool(ctx, body)
    except BatchError as error:
        return "InvalidAutoPoolSettings", error.message
    record = json.dumps({**owner, "keepAlive": bool(spec.keep_alive)})
    await ctx.redis.hset(ctx.keys.auto_pools(), key_of(body.id), record)
    return None


async def _missing_packages(ctx: Context, body: PoolCreate) -> list[str]:
    references = body.application_package_references or []
    if not references:
        return []
    _, missing = resolve(references, await catalogue(ctx))
    return missing


async def fail_job(ctx: Context, job: Record, code: str, message: str) -> None:
    """Complete the job with a scheduling error: its auto pool could not be created."""
    stamp = iso(now())
    error = json.dumps({"category": "usererror", "code": code, "message": message})
    fields = {"state": "completed", "pstate": job["state"], "pstt": job["stt"], "stt": stamp, "end": stamp}
    fields.update({"sched_error": error, "modified": stamp, "etag": new_etag()})
    await ctx.transitions.update_if(ctx.keys.job(job["key"]), "state", "active", fields)
    await ctx.redis.zrem(ctx.keys.pool_jobs(job["pool"]), job["key"])
    log.warning("job %s completed: its auto pool could not be created (%s: %s)", job["id"], code, message)


async def retire(ctx: Context) -> None:
    """Delete the auto pools whose job completed or is gone (those kept alive are only forgotten)."""
    for pool_key, value in (await reads.record(ctx.wire, ctx.keys.auto_pools())).items():
        owner = json.loads(value)
        if "schedule" in owner:
            holder = await reads.record(ctx.wire, ctx.keys.job_schedule(owner["schedule"]))
        else:
            holder = await reads.record(ctx.wire, ctx.keys.job(owner["job"]))
        if holder and holder.get("state") not in ("completed", "deleting"):
            continue
        if "job" in owner and await ctx.redis.sismember(ctx.keys.terminating_jobs(), owner["job"]):
            continue  # its release tasks still run on the pool's nodes
        pool = await reads.record(ctx.wire, ctx.keys.pool(pool_key))
        if pool and not owner.get("keepAlive"):
            try:
                await pools.delete_pool(ctx, pool["id"])
                log.info("auto pool %s deleted with its job", pool["id"])
            except Conflict:
                continue
        await ctx.redis.hdel(ctx.keys.auto_pools(), pool_key)
