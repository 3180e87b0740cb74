"""What node agents ask of the controller: claim an attempt, report its end, heartbeat."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from controller.context import Context
from controller.domain.clock import iso, new_etag, now, parse_duration
from controller.domain.ids import key_of
from controller.domain.lifecycle import end_of_attempt
from controller.errors import Conflict
from controller.render import Record
from controller.services.records import load
from controller.store.transitions import Heartbeat
from nodeagent.messages import (
    AttemptSpec,
    HeartbeatAnswer,
    NodeHeartbeat,
    OutputFileSpec,
    ReportAnswer,
    ResourceFileSpec,
    TaskReport,
    UserIdentitySpec,
)

log = logging.getLogger(__name__)


def _ms(seconds_from_now: float = 0.0) -> int:
    return int((time.time() + seconds_from_now) * 1000)


def stale(reason: str) -> Conflict:
    """409 for a claim or report from an attempt that is no longer current."""
    return Conflict(f"The attempt is no longer current: {reason}", code="AttemptNotCurrent")


async def claim(ctx: Context, attempt_id: str, node_id: str) -> AttemptSpec:
    """Claim an offered attempt for `node_id`; 409 when it is not (or no longer) claimable."""
    lease = _ms(ctx.settings.lease_seconds)
    ok, detail = await ctx.transitions.claim(attempt_id, node_id, iso(now()), lease, new_etag())
    if not ok:
        log.info("claim of attempt %s by node %s refused: %s", attempt_id, node_id, detail)
        raise stale(detail)
    task = await load(ctx.redis, detail)
    job = await load(ctx.redis, ctx.keys.job(key_of(task["job"]))) if task else None
    if task is None or job is None:
        raise stale("the task is gone")
    return attempt_spec(ctx, attempt_id, node_id, job, task)


def _environment(job_spec: dict[str, Any], task_spec: dict[str, Any]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for setting in job_spec.get("commonEnvironmentSettings", []) + task_spec.get("environmentSettings", []):
        merged[setting["name"]] = setting.get("value") or ""
    return merged


def _output_file(item: dict[str, Any]) -> OutputFileSpec:
    container = item["destination"]["container"]
    return OutputFileSpec(
        file_pattern=item["filePattern"],
        container_url=container["containerUrl"],
        path=container.get("path"),
        upload_headers=container.get("uploadHeaders", []),
        upload_condition=item["uploadOptions"]["uploadCondition"],
    )


def _resource_file(item: dict[str, Any]) -> ResourceFileSpec:
    return ResourceFileSpec(
        http_url=item.get("httpUrl"),
        storage_container_url=item.get("storageContainerUrl"),
        auto_storage_container_name=item.get("autoStorageContainerName"),
        blob_prefix=item.get("blobPrefix"),
        file_path=item.get("filePath"),
        file_mode=item.get("fileMode"),
    )


def _identity(spec: dict[str, Any]) -> UserIdentitySpec:
    identity = spec.get("userIdentity") or {}
    auto = identity.get("autoUser") or {}
    return UserIdentitySpec(
        username=identity.get("username"),
        auto_user_scope=auto.get("scope") or "pool",
        elevation_level=auto.get("elevationLevel") or "nonadmin",
    )


def _seconds(duration: str | None) -> float | None:
    delta = parse_duration(duration) if duration else None
    return delta.total_seconds() if delta is not None else None


def attempt_spec(ctx: Context, attempt_id: str, node_id: str, job: Record, task: Record) -> AttemptSpec:
    """Everything the agent needs to run the attempt, from the stored job and task."""
    job_spec, task_spec = json.loads(job["spec"]), json.loads(task["spec"])
    constraints = task_spec.get("constraints") or {}
    return AttemptSpec(
        attempt_id=attempt_id,
        job_id=job["id"],
        task_id=task["id"],
        pool_id=job["pool_id"],
        node_id=node_id,
        account_name=ctx.settings.account_name,
        account_url=ctx.endpoint + "/",
        command_line=task_spec["commandLine"],
        environment=_environment(job_spec, task_spec),
        resource_files=[_resource_file(item) for item in task_spec.get("resourceFiles", [])],
        output_files=[_output_file(item) for item in task_spec.get("outputFiles", [])],
        user_identity=_identity(task_spec),
        max_wall_clock_seconds=_seconds(constraints.get("maxWallClockTime")),
        retention_seconds=_seconds(constraints.get("retentionTime")),
        required_slots=int(task.get("slots", "1")),
        retry_count=int(task.get("retries", "0")),
    )


async def report(ctx: Context, attempt_id: str, body: TaskReport) -> ReportAnswer:
    """Apply an attempt's outcome if the attempt is still the task's current one; else 409."""
    attempt = await load(ctx.redis, ctx.keys.attempt(attempt_id))
    task = await load(ctx.redis, attempt["task"]) if attempt else None
    if attempt is None or task is None:
        raise stale("unknown attempt")
    stamp = iso(now())
    decision = end_of_attempt(body, int(task.get("retries", "0")), int(task.get("max_retries", "0")), stamp)
    ok, detail = await ctx.transitions.finish(
        attempt_id,
        body.node_id,
        decision.mode,
        decision.result,
        stamp,
        new_etag(),
        {**decision.fields, "etag": new_etag()},
    )
    if not ok:
        log.warning("report of attempt %s from node %s refused: %s", attempt_id, body.node_id, detail)
        raise stale(detail)
    log.info("attempt %s of %s/%s ended: %s", attempt_id, task["job"], task["id"], decision.mode)
    await ctx.wake_scheduler()
    return ReportAnswer(accepted=True)


async def heartbeat(ctx: Context, node_id: str, body: NodeHeartbeat) -> HeartbeatAnswer:
    """Register or refresh a node and renew its leases; answers the attempts it must stop."""
    beat = Heartbeat(
        node_id=node_id,
        pool_key=key_of(body.pool_id),
        pool_id=body.pool_id,
        slots=body.task_slots,
        file_url=body.file_server_url,
        ip=body.ip_address,
        version=body.agent_version,
        boot=iso(body.boot_time) if body.boot_time else "",
        attempt_keys=[ctx.keys.attempt(attempt) for attempt in body.running_attempts],
    )
    stale_keys = await ctx.transitions.heartbeat(beat, iso(now()), _ms(), _ms(ctx.settings.lease_seconds), new_etag())
    if stale_keys:
        log.info("node %s told to stop %d stale attempts", node_id, len(stale_keys))
    return HeartbeatAnswer(stale_attempts=[ctx.keys.attempt_id_of(key) for key in stale_keys])
