"""The scheduler: one leader at a time places queued tasks on nodes with free slots and offers them."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from controller.context import Context
from controller.converge import converge
from controller.domain.placement import Want, place, place_gang
from controller.domain.states import SCHEDULABLE_NODE_STATES
from controller.reconcile import reconcile
from controller.store import reads
from controller.store.reads import pairs
from controller.store.transitions import Placement
from controller.store.wire import Command
from nodeagent.messages import Dispatch, Offer

log = logging.getLogger(__name__)

LEADER_TTL_MS = 5000

JOB_FIELDS = ("max_parallel", "prep")
"""What placement reads of a job."""
TASK_FIELDS = ("slots", "job", "id", "affinity", "exclusive", "instances")
"""What placement reads of each queued task (`Want`, the offer's names, multi-instance)."""


@dataclass(frozen=True)
class Refill:
    """What a refill placed on one node."""

    attempt_ids: list[str]
    """The attempts offered to the node."""
    room_left: bool
    """The node still has free slots (no queued task fitted them)."""
    pool_key: str = ""
    pool: dict[str, str] = field(default_factory=dict)
    """The node's pool as read for the placement (its key and record)."""


class Scheduler:
    """Runs placement and reconciliation passes while it holds the leader lease."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.token = uuid.uuid4().hex
        self.leading = False
        self.last_repair = 0.0
        self.totals: dict[str, int] = {}
        """Slots of each schedulable node seen in the last pass."""
        self.pool_of: dict[str, str] = {}
        """The pool key of each node a refill has read; each refill checks it against the node's record."""

    async def run(self) -> None:
        """Loop until cancelled: lead, place, repair once a tick, then sleep until woken or a tick passes.

        A wake-up (a task added, a slot freed) runs placement only; leadership, the reconciler and
        pool convergence run at most once per tick, so a busy stream of reports costs little.
        """
        while True:
            try:
                if time.monotonic() - self.last_repair >= self.ctx.settings.scheduler_tick_seconds:
                    await self._lead_and_repair()
                if self.leading:
                    await self.place_all()
                await self._wait()
            except RedisError as error:
                log.warning("scheduler pass failed, retrying: %s", error)
                await asyncio.sleep(self.ctx.settings.scheduler_tick_seconds)
            except Exception:  # noqa: BLE001 - one failing repair must not stop scheduling for good
                log.exception("scheduler pass failed, retrying")
                await asyncio.sleep(self.ctx.settings.scheduler_tick_seconds)

    async def _lead_and_repair(self) -> None:
        self.last_repair = time.monotonic()
        if await self._lead():
            await reconcile(self.ctx)
            await converge(self.ctx)

    async def _lead(self) -> bool:
        redis, key = self.ctx.redis, self.ctx.keys.scheduler_leader()
        if await redis.set(key, self.token, nx=True, px=LEADER_TTL_MS):
            await self._take_over()
        elif await redis.get(key) == self.token:
            await redis.pexpire(key, LEADER_TTL_MS)
        else:
            self.leading = False
        return self.leading

    async def _take_over(self) -> None:
        """Become the leader: first give running leases a grace period, since their heartbeats may not have
        reached a controller for a while (the previous leader died, or every controller was down)."""
        floor = int((time.time() + self.ctx.settings.lease_seconds) * 1000)
        extended = await self.ctx.transitions.lease_grace(floor)
        self.leading = True
        log.info("this controller now runs the scheduler; %d running leases given a grace period", extended)

    async def resign(self) -> None:
        """Give up leadership at shutdown so another controller takes over at once."""
        key = self.ctx.keys.scheduler_leader()
        if await self.ctx.redis.get(key) == self.token:
            await self.ctx.redis.delete(key)
        self.leading = False

    async def _wait(self) -> None:
        await self.ctx.redis.blpop([self.ctx.keys.scheduler_wake()], timeout=self.ctx.settings.scheduler_tick_seconds)

    async def place_all(self) -> None:
        """One placement pass over every pool; each node's offers go out in one message."""
        dispatches: list[Dispatch] = []
        for pool_key in await reads.members(self.ctx.wire, self.ctx.keys.pools()):
            dispatches += await self.place_pool(pool_key)
        await self.ctx.dispatcher.publish(dispatches)

    async def refill(self, node_id: str) -> Refill | None:
        """Place queued tasks on the free slots of one node now, without a message.

        A node that reports finished attempts takes the next ones in the answer (the reports freed the
        slots). Only the leader places: elsewhere (None) the leader's next pass fills them. The node, its
        pool and the pool's jobs are read in one round trip once the node's pool is known.
        """
        if not self.leading:
            return None
        keys = self.ctx.keys
        pool_key = self.pool_of.get(node_id) or (await reads.record(self.ctx.wire, keys.node(node_id))).get("pool")
        if not pool_key:
            return None
        node, pool, job_keys = await self.ctx.wire.batch(
            [("HGETALL", keys.node(node_id)), ("HGETALL", keys.pool(pool_key)), self._jobs_of(pool_key)]
        )
        record = pairs(node)
        if record.get("pool") != pool_key:
            # The node is gone (or was made anew meanwhile): the scheduler's next pass places.
            self.pool_of.pop(node_id, None)
            return None
        self.pool_of[node_id] = pool_key
        pool_record = pairs(pool)
        free = self._free_slots([node_id], [record])
        dispatches, left = await self._place(pool_key, free, pool_record.get("spec"), job_keys)
        attempt_ids = [offer.attempt_id for dispatch in dispatches for offer in dispatch.offers]
        return Refill(attempt_ids, bool(left), pool_key, pool_record)

    def _jobs_of(self, pool_key: str) -> Command:
        """The command that reads the pool's jobs with queued tasks, in job order."""
        return ("ZRANGE", self.ctx.keys.pool_jobs(pool_key), 0, -1)

    def _free_slots(self, node_ids: list[str], records: list[dict[str, str]]) -> dict[str, int]:
        """Free slots of the listed nodes that are schedulable and have some, from their records.

        Their total slots go to `self.totals`.
        """
        alive_after = (time.time() - self.ctx.settings.node_timeout_seconds) * 1000
        free: dict[str, int] = {}
        for node_id, record in zip(node_ids, records, strict=True):
            usable = record.get("state") in SCHEDULABLE_NODE_STATES and record.get("scheduling") != "disabled"
            if usable and float(record.get("seen", "0")) >= alive_after:
                free[node_id] = int(record["slots"]) - int(record["used"])
                self.totals[node_id] = int(record["slots"])
        return {node: slots for node, slots in free.items() if slots > 0}

    async def place_pool(self, pool_key: str) -> list[Dispatch]:
        """Offer as many queued tasks of the pool's jobs, in job order, as its nodes have room for; the
        offers, one dispatch per node, not yet sent."""
        keys = self.ctx.keys
        node_ids = await reads.members(self.ctx.wire, keys.pool_nodes(pool_key))
        records = await reads.records(self.ctx.wire, [keys.node(node_id) for node_id in node_ids])
        free = self._free_slots(node_ids, records)
        if not free:
            return []
        spec, job_keys = await self.ctx.wire.batch([("HGET", keys.pool(pool_key), "spec"), self._jobs_of(pool_key)])
        dispatches, _ = await self._place(pool_key, free, spec, job_keys)
        return dispatches

    async def _place(
        self, pool_key: str, free: dict[str, int], spec: str | None, job_keys: list[str]
    ) -> tuple[list[Dispatch], dict[str, int]]:
        """Offer queued tasks of the pool's `job_keys`, in order, on the `free` slots, by the pool's `spec`; the
        offers, one dispatch per node, and the free slots left."""
        offers: dict[str, list[Offer]] = defaultdict(list)
        if not free:
            return [], {}
        policy = json.loads(spec or "{}").get("taskSchedulingPolicy") or {}
        fill_type = str(policy.get("nodeFillType", "spread"))
        for job_key in job_keys:
            free = await self._place_job(pool_key, job_key, free, fill_type, offers)
            if not free:
                break
        return [Dispatch(node_id=node_id, offers=made) for node_id, made in offers.items()], free

    async def _place_job(
        self, pool_key: str, job_key: str, free: dict[str, int], fill_type: str, offers: dict[str, list[Offer]]
    ) -> dict[str, int]:
        redis, keys = self.ctx.redis, self.ctx.keys
        room = sum(free.values())
        head = await self.ctx.transitions.queue_head(job_key, room, JOB_FIELDS, TASK_FIELDS)
        limit, prep = head.job
        allowed = await self._parallel_room(job_key, int(limit or -1), room)
        if allowed <= 0:
            return free
        task_keys, rows = head.task_keys[:allowed], head.rows[:allowed]
        if not task_keys:
            await redis.zrem(keys.pool_jobs(pool_key), job_key)
            return free
        names = {task_key: (row[1] or "", row[2] or "") for task_key, row in zip(task_keys, rows, strict=True)}
        # Only a job whose preparation must succeed keeps its tasks off the nodes where it failed.
        unprepared = await reads.set_members(self.ctx.wire, keys.job_prep_failed(job_key)) if prep == "wait" else []
        usable = {node: slots for node, slots in free.items() if node not in unprepared}
        gangs = {key: int(row[5]) for key, row in zip(task_keys, rows, strict=True) if row[5]}
        usable = await self._place_gangs(job_key, pool_key, gangs, usable, names, offers)
        wants = [
            Want(key, int(row[0] or 1), row[3] or "", row[4] == "1")
            for key, row in zip(task_keys, rows, strict=True)
            if key not in gangs
        ]
        placed, left = place(wants, usable, fill_type, self.totals)
        left = {**free, **left}
        await self._offer(job_key, pool_key, placed, names, offers)
        return {node: slots for node, slots in left.items() if slots > 0}

    async def _place_gangs(
        self,
        job_key: str,
        pool_key: str,
        gangs: dict[str, int],
        free: dict[str, int],
        names: dict[str, tuple[str, str]],
        offers: dict[str, list[Offer]],
    ) -> dict[str, int]:
        """Offer each multi-instance task to as many nodes as it has instances, all or none; the slots left."""
        left = dict(free)
        for task_key, count in gangs.items():
            nodes = place_gang(count, left)
            if nodes is None:
                continue
            members = [(node_id, uuid.uuid4().hex) for node_id in nodes]
            now_ms = int(time.time() * 1000)
            placed = await self.ctx.transitions.offer_gang(job_key, pool_key, task_key, now_ms, members)
            if not placed:
                continue
            for node_id, attempt_id in members:
                left[node_id] -= 1
                job_id, task_id = names[task_key]
                offers[node_id].append(Offer(attempt_id=attempt_id, job_id=job_id, task_id=task_id))
        return left

    async def _parallel_room(self, job_key: str, limit: int, wanted: int) -> int:
        """How many more attempts the job may have at once (its maxParallelTasks `limit`), at most `wanted`."""
        if limit < 1:
            return wanted
        live = int(await self.ctx.wire.call("SCARD", self.ctx.keys.job_attempts(job_key)))
        return min(wanted, limit - live)

    async def _offer(
        self,
        job_key: str,
        pool_key: str,
        placed: list[tuple[Want, str]],
        names: dict[str, tuple[str, str]],
        offers: dict[str, list[Offer]],
    ) -> None:
        by_node: dict[str, list[Placement]] = defaultdict(list)
        for want, node_id in placed:
            by_node[node_id].append(Placement(want.task_key, uuid.uuid4().hex))
        now_ms = int(time.time() * 1000)
        for node_id, placements in by_node.items():
            accepted = set(await self.ctx.transitions.offer(node_id, job_key, pool_key, now_ms, placements))
            for placement in placements:
                if placement.attempt_id in accepted:
                    job_id, task_id = names[placement.task_key]
                    offers[node_id].append(Offer(attempt_id=placement.attempt_id, job_id=job_id, task_id=task_id))
