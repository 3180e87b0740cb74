"""Job preparation and release tasks: what nodes report of them, releases when a job ends, their status list.

Preparation runs on a node inside the first attempt of the job there (`nodeagent.jobtasks`); the node
reports its state, which is kept per node (`prepstate` for the claim and the scheduler, `jobprep`
as the API shows it). Its success lets the job's `preparing` tasks on that node run; with
waitForSuccess its failure keeps the job's tasks off the node.

A job with a release task that ran its preparation somewhere ends in `terminating` (the end_job and
finish scripts decide), or stays `deleting` when it is deleted. The reconciler then hands the release
to every node where preparation ran, through their heartbeat answers, drops nodes that are gone, and
completes (or deletes) the job once every release was reported.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from controller import render
from controller.context import Context
from controller.domain.clock import iso, new_etag, now
from controller.domain.ids import key_of
from controller.render import Record
from controller.services import specs
from controller.services.jobs import get_job, purge_job
from controller.services.records import Page, load
from controller.store import reads
from nodeagent.messages import AttemptSpec, JobTaskReport

log = logging.getLogger(__name__)

GONE_NODE_STATES = ("unknown", "unusable")
"""Node states in which a pending release is given up (the node cannot run it)."""


def execution_info(report: JobTaskReport, endpoint: str, pool_id: str) -> dict[str, Any]:
    """A preparation's or release's executionInfo with Azure's names."""
    info: dict[str, Any] = {
        "startTime": iso(report.start_time),
        "state": report.state,
        "taskRootDirectory": report.task_root_directory,
        "taskRootDirectoryUrl": f"{render.node_url(endpoint, pool_id, report.node_id)}/files/"
        + report.task_root_directory,
    }
    if report.end_time is not None:
        info["endTime"] = iso(report.end_time)
    if report.exit_code is not None:
        info["exitCode"] = report.exit_code
    if report.failure is not None:
        info["failureInfo"] = report.failure.model_dump(mode="json")
    if report.result is not None:
        info["result"] = report.result
    if report.kind == "preparation":
        info["retryCount"] = report.retry_count
        if report.last_retry_time is not None:
            info["lastRetryTime"] = iso(report.last_retry_time)
    return info


async def record_report(ctx: Context, node_id: str, report: JobTaskReport) -> None:
    """Keep what a node reports of a job's preparation or release, and act on it."""
    job = await load(ctx.wire, ctx.keys.job(key_of(report.job_id)))
    if job is None:
        return
    keys, job_key = ctx.keys, job["key"]
    info = json.dumps(execution_info(report.model_copy(update={"node_id": node_id}), ctx.endpoint, job["pool_id"]))
    if report.kind == "release":
        await ctx.redis.hset(keys.job_release_info(job_key), node_id, info)
        if report.state == "completed":
            await _released(ctx, job_key, node_id)
        return
    await ctx.redis.hset(keys.job_prep_info(job_key), node_id, info)
    state = "running" if report.state == "running" else report.result or "failure"
    await ctx.redis.hset(keys.job_prep_states(job_key), node_id, state)
    if state == "success":
        await ctx.redis.srem(keys.job_prep_failed(job_key), node_id)
        moved = await ctx.transitions.prepared(node_id, job_key, iso(now()), new_etag())
        log.info("job %s prepared on node %s; %d tasks there run", job["id"], node_id, moved)
    elif state == "failure" and job.get("prep") == "wait":
        await ctx.redis.sadd(keys.job_prep_failed(job_key), node_id)
        log.warning("job %s: preparation failed on node %s; its tasks are kept off it", job["id"], node_id)


async def _released(ctx: Context, job_key: str, node_id: str) -> None:
    """A node is done with a job's release."""
    await ctx.redis.hdel(ctx.keys.node_releases(node_id), job_key)
    await ctx.redis.srem(ctx.keys.job_releasing(job_key), node_id)


async def releases_for(ctx: Context, node_id: str) -> list[AttemptSpec]:
    """The release tasks a node is to run."""
    pending = await reads.record(ctx.wire, ctx.keys.node_releases(node_id))
    return [AttemptSpec.model_validate_json(item) for item in pending.values()]


async def drive_releases(ctx: Context) -> None:
    """Move every terminating job on: hand out its releases once, drop gone nodes, complete it when done."""
    for job_key in await reads.set_members(ctx.wire, ctx.keys.terminating_jobs()):
        job = await load(ctx.wire, ctx.keys.job(job_key))
        if job is None or job["state"] not in ("terminating", "deleting"):
            await ctx.redis.srem(ctx.keys.terminating_jobs(), job_key)
            continue
        if job.get("releases_sent") != "1":
            await _send_releases(ctx, job)
        await _drop_gone_nodes(ctx, job_key)
        if await ctx.redis.scard(ctx.keys.job_releasing(job_key)):
            continue
        if job["state"] == "deleting":
            await ctx.redis.srem(ctx.keys.terminating_jobs(), job_key)
            await purge_job(ctx, job_key)
        else:
            await _complete(ctx, job)


async def _send_releases(ctx: Context, job: Record) -> None:
    """Give the release task to each node where the job's preparation ran."""
    keys, job_key = ctx.keys, job["key"]
    pool = await load(ctx.wire, keys.pool(job["pool"]))
    prepared = await reads.record(ctx.wire, keys.job_prep_states(job_key))
    for node_id in prepared:
        task = await specs.release(ctx, node_id, job, pool)
        if task is None:
            break
        await ctx.redis.hset(keys.node_releases(node_id), job_key, task.model_dump_json())
        await ctx.redis.sadd(keys.job_releasing(job_key), node_id)
    await ctx.redis.hset(keys.job(job_key), "releases_sent", "1")
    log.info("job %s: release task handed to %d nodes", job["id"], len(prepared))


async def _drop_gone_nodes(ctx: Context, job_key: str) -> None:
    for node_id in await reads.set_members(ctx.wire, ctx.keys.job_releasing(job_key)):
        node = await load(ctx.wire, ctx.keys.node(node_id))
        if node is None or node.get("state") in GONE_NODE_STATES:
            log.warning("job %s: node %s is gone; its release task is given up", job_key, node_id)
            await _released(ctx, job_key, node_id)


async def _complete(ctx: Context, job: Record) -> None:
    stamp = iso(now())
    fields = {"state": "completed", "pstate": "terminating", "pstt": job["stt"], "stt": stamp, "end": stamp}
    result = await ctx.transitions.update_if(
        ctx.keys.job(job["key"]), "state", "terminating", {**fields, "modified": stamp, "etag": new_etag()}
    )
    await ctx.redis.srem(ctx.keys.terminating_jobs(), job["key"])
    if result[0] == "ok":
        log.info("job %s completed after its release tasks", job["id"])


async def status_list(ctx: Context, job_id: str) -> Page:
    """The job's preparation and release status on every node where either ran."""
    job = await get_job(ctx, job_id)
    preparations = await reads.record(ctx.wire, ctx.keys.job_prep_info(job["key"]))
    releases = await reads.record(ctx.wire, ctx.keys.job_release_info(job["key"]))
    items = []
    for node_id in sorted(set(preparations) | set(releases)):
        item: dict[str, Any] = {
            "poolId": job["pool_id"],
            "nodeId": node_id,
            "nodeUrl": render.node_url(ctx.endpoint, job["pool_id"], node_id),
        }
        if node_id in preparations:
            item["jobPreparationTaskExecutionInfo"] = json.loads(preparations[node_id])
        if node_id in releases:
            item["jobReleaseTaskExecutionInfo"] = json.loads(releases[node_id])
        items.append(item)
    return Page(items=items, next_token="")
