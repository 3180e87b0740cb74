"""What node agents ask of the controller: claim an attempt, report its end, heartbeat."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from typing import cast

from controller.context import Context
from controller.domain.clock import iso, new_etag, now
from controller.domain.exits import exit_actions
from controller.domain.ids import key_of
from controller.domain.lifecycle import end_of_attempt
from controller.errors import Conflict
from controller.render import Record
from controller.services import specs
from controller.services.jobs import apply_job_action, end_with_manager
from controller.services.jobtasks import releases_for
from controller.services.records import load
from controller.store.transitions import AttemptFinish, Claimed, Heartbeat
from nodeagent.messages import (
    AttemptSpec,
    ClaimAnswer,
    Coordinated,
    FailureInfo,
    GangState,
    HeartbeatAnswer,
    NodeCommand,
    NodeHeartbeat,
    ReportAnswer,
    ReportBatch,
    ReportBatchAnswer,
    TaskReport,
    TaskStats,
)

log = logging.getLogger(__name__)

READINESS_STATES = {"ready": "idle"}
"""How the agent's readiness maps to a node state (the others are node states already)."""


def _ms(seconds_from_now: float = 0.0) -> int:
    return int((time.time() + seconds_from_now) * 1000)


def stale(reason: str) -> Conflict:
    """409 for a claim or report from an attempt that is no longer current."""
    return Conflict(f"The attempt is no longer current: {reason}", code="AttemptNotCurrent")


async def claim_all(
    ctx: Context, node_id: str, attempt_ids: list[str], pools: dict[str, Record | None] | None = None
) -> ClaimAnswer:
    """Claim offered attempts for `node_id`: the specs of those it now runs, the ids of those refused.

    `pools` holds pool records already read, by pool key.
    """
    lease = _ms(ctx.settings.lease_seconds)
    results = await ctx.transitions.claim_all(attempt_ids, node_id, iso(now()), lease, new_etag())
    claimed: list[tuple[str, Claimed]] = []
    refused: list[str] = []
    for attempt_id, result in zip(attempt_ids, results, strict=True):
        if result.ok:
            claimed.append((attempt_id, result))
        else:
            log.info("claim of attempt %s by node %s refused: %s", attempt_id, node_id, result.detail)
            refused.append(attempt_id)
    built = await _specs(ctx, node_id, claimed, dict(pools or {}))
    return ClaimAnswer(specs=list(built.values()), refused=refused + [i for i, _ in claimed if i not in built])


async def _specs(
    ctx: Context, node_id: str, claimed: list[tuple[str, Claimed]], pools: dict[str, Record | None]
) -> dict[str, AttemptSpec]:
    """The specs of claimed attempts, by attempt id; those whose task or job is gone left out.

    The pool records read go to `pools`, by pool key.
    """
    built: dict[str, AttemptSpec] = {}
    for attempt_id, (_, _, task, job, attempt) in claimed:
        if not task or not job:
            continue
        if job["pool"] not in pools:
            pools[job["pool"]] = await load(ctx.wire, ctx.keys.pool(job["pool"]))
        spec = await specs.attempt_spec(ctx, attempt_id, node_id, job, task, pools[job["pool"]])
        if attempt.get("gang"):
            spec = spec.model_copy(update={"multi_instance": await specs.multi_instance(ctx, task, attempt)})
        built[attempt_id] = spec
    return built


async def coordinated(ctx: Context, attempt_id: str, body: Coordinated) -> None:
    """Record how an instance's coordination command ended (once); a failure fails the whole gang."""
    attempt_key = ctx.keys.attempt(attempt_id)
    attempt = await load(ctx.wire, attempt_key)
    if attempt is None or attempt.get("node_id") != body.node_id or attempt.get("state") != "running":
        raise stale("the instance is not running")
    if not await ctx.redis.hsetnx(attempt_key, "coord_end", iso(body.end_time)):
        return
    exit_code = "" if body.exit_code is None else str(body.exit_code)
    await ctx.redis.hset(attempt_key, mapping={"coord_start": iso(body.start_time), "coord_exit": exit_code})
    if body.failure is None:
        await ctx.redis.hincrby(attempt["task"], "coordinated", 1)
        return
    failure = body.failure.model_dump_json()
    await ctx.redis.hset(attempt_key, "coord_failure", failure)
    await ctx.redis.hsetnx(attempt["task"], "gang_failed", failure)


async def gang(ctx: Context, attempt_id: str) -> GangState:
    """Whether every instance of the primary's task coordinated (`ready`), one failed, or not yet."""
    attempt_key = ctx.keys.attempt(attempt_id)
    task_key = await ctx.redis.hget(attempt_key, "task")
    task = await load(ctx.wire, str(task_key)) if task_key else None
    if task is None or task.get("attempt") != attempt_key:
        raise stale("the attempt is not the task's primary")
    if task.get("gang_failed"):
        return GangState(state="failed", failure=FailureInfo.model_validate_json(task["gang_failed"]))
    ready = int(task.get("coordinated", "0")) >= int(task.get("instances", "1"))
    return GangState(state="ready" if ready else "waiting")


def accumulated_stats(previous: str, report: TaskReport) -> str:
    """The task's statistics over all its attempts, with this report's added (JSON)."""
    total = TaskStats.model_validate_json(previous) if previous else TaskStats()
    current = report.stats or TaskStats(
        user_cpu_seconds=report.user_cpu_seconds,
        kernel_cpu_seconds=report.kernel_cpu_seconds,
        wall_clock_seconds=report.wall_clock_seconds,
    )
    summed = {name: getattr(total, name) + getattr(current, name) for name in TaskStats.model_fields}
    summed["peak_memory_bytes"] = max(total.peak_memory_bytes, current.peak_memory_bytes)
    return TaskStats.model_validate(summed).model_dump_json()


@dataclass(frozen=True)
class Ending:
    """One reported attempt's end as decided, before the store applies it."""

    attempt_id: str
    task: Record
    finish: AttemptFinish
    job_action: str


async def report_all(ctx: Context, node_id: str, batch: ReportBatch) -> ReportBatchAnswer:
    """Apply each report; with `refill`, place queued tasks on the freed slots at once and claim them for the node.

    The attempts and their tasks are read in one round trip and the ends applied in one pipeline, each end a
    compare-and-set of its own: a report of an attempt that is no longer its task's current one is refused.
    """
    attempt_keys = [ctx.keys.attempt(item.attempt_id) for item in batch.reports]
    answers: dict[str, ReportAnswer] = {}
    endings: list[Ending] = []
    for item, (attempt, task) in zip(batch.reports, await ctx.transitions.linked(attempt_keys, "task"), strict=True):
        try:
            if item.report.node_id != node_id:
                raise stale("the report names another node")
            if not attempt or not task:
                raise stale("unknown attempt")
            if item.report.outcome == "job_preparation_failed":
                answers[item.attempt_id] = await _unprepared(ctx, attempt, task, node_id)
            else:
                endings.append(_ending(ctx, item.attempt_id, item.report, attempt["task"], task))
        except Conflict as refusal:
            answers[item.attempt_id] = ReportAnswer(accepted=False, reason=refusal.message)
    results = await ctx.transitions.finish_all([(ending.attempt_id, ending.finish) for ending in endings])
    for ending, result in zip(endings, results, strict=True):
        answers[ending.attempt_id] = await _ended(ctx, ending, result.ok, result.detail)
    refill = await ctx.refill(node_id) if batch.refill and ctx.refill is not None else None
    claimed = ClaimAnswer()
    if refill and refill.attempt_ids:
        claimed = await claim_all(ctx, node_id, refill.attempt_ids, {refill.pool_key: refill.pool or None})
    if refill is None or refill.room_left or any(result.queued for result in results):
        # Slots are free or tasks were queued: the other nodes may take work too.
        await ctx.wake_scheduler()
    return ReportBatchAnswer(answers=answers, specs=claimed.specs)


def _ending(ctx: Context, attempt_id: str, body: TaskReport, task_key: str, task: Record) -> Ending:
    """What the attempt's report means for its task: completion or a retry, and the exit options that apply."""
    stamp = iso(now())
    decision = end_of_attempt(body, int(task.get("retries", "0")), int(task.get("max_retries", "0")), stamp)
    conditions = json.loads(task.get("spec", "{}")).get("exitConditions")
    actions = exit_actions(conditions, body.outcome, body.exit_code)
    fields = {**decision.fields, "etag": new_etag(), "stats": accumulated_stats(task.get("stats", ""), body)}
    job_key = ctx.keys.job_key_of_task(task_key)
    finish = AttemptFinish(job_key, body.node_id, decision.mode, decision.result, stamp, new_etag(), fields)
    finish = replace(finish, dependency_action=actions.dependency_action)
    return Ending(attempt_id, task, finish, actions.job_action if decision.mode == "completed" else "none")


async def _ended(ctx: Context, ending: Ending, ok: bool, detail: str) -> ReportAnswer:
    """After the store applied (or refused) an end: the job manager's and exit options' job actions, the answer."""
    task = ending.task
    if not ok:
        log.warning("report of attempt %s from node %s refused: %s", ending.attempt_id, ending.finish.node_id, detail)
        return ReportAnswer(accepted=False, reason=stale(detail).message)
    log.info("attempt %s of %s/%s ended: %s", ending.attempt_id, task["job"], task["id"], ending.finish.mode)
    if ending.finish.mode == "completed" and task.get("jm") == "1" and task.get("kill_job") == "1":
        await end_with_manager(ctx, task["job"])
    if ending.job_action != "none":
        await apply_job_action(ctx, task["job"], ending.job_action)
    return ReportAnswer(accepted=True)


def _heartbeat(ctx: Context, node_id: str, body: NodeHeartbeat) -> Heartbeat:
    start_task = body.start_task.model_dump_json(exclude_none=True) if body.start_task else ""
    return Heartbeat(
        node_id=node_id,
        pool_key=key_of(body.pool_id),
        pool_id=body.pool_id,
        slots=body.task_slots,
        file_url=body.file_server_url,
        ip=body.ip_address,
        version=body.agent_version,
        boot=iso(body.boot_time) if body.boot_time else "",
        attempt_keys=[ctx.keys.attempt(attempt) for attempt in body.running_attempts],
        state=READINESS_STATES.get(body.readiness, body.readiness),
        start_task=start_task,
        runtime=body.container_runtime or "",
        config_version=body.pool_config_version,
        claims_in_flight=body.claims_in_flight,
    )


async def _unprepared(ctx: Context, attempt: Record, task: Record, node_id: str) -> ReportAnswer:
    """The node could not prepare the attempt's job: the task goes back to the queue, for another node."""
    if attempt.get("node_id") != node_id:
        raise stale("attempt belongs to another node")
    job_key = ctx.keys.job_key_of_task(attempt["task"])
    await ctx.redis.sadd(ctx.keys.job_prep_failed(job_key), node_id)
    attempt_key = ctx.keys.attempt(attempt["id"])
    if not await ctx.transitions.stop_attempt(attempt_key, "running", "release", iso(now()), new_etag()):
        raise stale("attempt is not running")
    log.info("task %s/%s queued again: its job could not be prepared on node %s", task["job"], task["id"], node_id)
    await ctx.wake_scheduler()
    return ReportAnswer(accepted=True)


async def _requeue_stopped(ctx: Context, node_id: str, attempt_keys: list[str]) -> None:
    """Queue again the tasks of attempts the node was asked to stop and no longer runs."""
    for attempt_key in attempt_keys:
        if await ctx.transitions.stop_attempt(attempt_key, "stopping", "requeue", iso(now()), new_etag()):
            log.info(
                "node %s stopped attempt %s; its task is queued again", node_id, ctx.keys.attempt_id_of(attempt_key)
            )
    if attempt_keys:
        await ctx.wake_scheduler()


async def heartbeat(ctx: Context, node_id: str, body: NodeHeartbeat) -> HeartbeatAnswer:
    """Register or refresh a node, renew its leases, and send its pool's config to a node that has applied none.

    A node applies the pool's config when it starts or restarts, and keeps it while it runs: a pool's new start
    task or packages reach the nodes that join or restart after the change, as in Azure Batch.
    """
    beat = _heartbeat(ctx, node_id, body)
    lease = _ms(ctx.settings.lease_seconds)
    result = await ctx.transitions.heartbeat(beat, iso(now()), _ms(), lease, new_etag())
    command, stale_keys = result.command, result.stale
    if stale_keys:
        log.info("node %s told to stop %d stale attempts", node_id, len(stale_keys))
    await _requeue_stopped(ctx, node_id, result.stopped)
    pool = await load(ctx.wire, ctx.keys.pool(beat.pool_key))
    config = None
    if command != "leave" and pool is not None and not body.pool_config_version:
        config = await specs.pool_config(ctx, pool)
    if command:
        log.info("node %s told to %s", node_id, command)
    return HeartbeatAnswer(
        stale_attempts=[ctx.keys.attempt_id_of(key) for key in stale_keys],
        pool_config=config,
        lease_seconds=ctx.settings.lease_seconds,
        command=cast(NodeCommand, command) if command else None,
        job_releases=await releases_for(ctx, node_id) if not command else [],
    )
