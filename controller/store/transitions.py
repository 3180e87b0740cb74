"""The only code that changes job, task, pool, node and attempt state: atomic Lua compare-and-sets.

Each function runs one script from `lua/`. Python decides what a change should
be (the domain functions); a script applies it only if the state it was decided
on still holds, so concurrent controllers, late reports and duplicate
deliveries cannot overwrite each other.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, NamedTuple, cast

from controller.store.keys import Keys
from controller.store.reads import pairs
from controller.store.wire import Script, Wire


def _load(name: str) -> str:
    return resources.files("controller.store").joinpath(f"lua/{name}.lua").read_text()


SCRIPT_NAMES = (
    "linked",
    "queue_head",
    "create",
    "add_tasks",
    "offer",
    "offer_gang",
    "claim",
    "finish",
    "stop_attempt",
    "stopping",
    "prepared",
    "heartbeat",
    "end_job",
    "node_silent",
    "update_if",
    "remove_node",
    "lease_grace",
    "close_task",
    "delete_task",
    "reactivate",
)


@dataclass(frozen=True)
class Placement:
    """One task the scheduler wants on a node, with the attempt id it chose."""

    task_key: str
    attempt_id: str


@dataclass(frozen=True)
class Heartbeat:
    """What a node said about itself, ready for the store."""

    node_id: str
    pool_key: str
    pool_id: str
    slots: int
    file_url: str
    ip: str
    version: str
    boot: str
    attempt_keys: Sequence[str]
    state: str = "idle"
    start_task: str = ""
    runtime: str = ""
    config_version: str = ""
    claims_in_flight: bool = False


@dataclass(frozen=True)
class AttemptFinish:
    """What `finish` applies: the reporting node, retry or completion, the task's new fields."""

    job_key: str
    node_id: str
    mode: str
    result: str
    now: str
    etag: str
    fields: Mapping[str, str]
    dependency_action: str = "satisfy"


class Claimed(NamedTuple):
    """How claiming one offered attempt went."""

    ok: bool
    detail: str
    """When claimed: the task's hash key; when refused: why."""
    task: dict[str, str]
    """When claimed, the records as the claim left them: the task, its job and the attempt (else empty)."""
    job: dict[str, str]
    attempt: dict[str, str]


def _claimed(reply: Sequence[Any]) -> Claimed:
    """claim.lua's reply: ok with the task key and three records, or refused with the reason."""
    if reply[0] != "ok":
        return Claimed(False, reply[1], {}, {}, {})
    return Claimed(True, reply[1], pairs(reply[2]), pairs(reply[3]), pairs(reply[4]))


class QueueHead(NamedTuple):
    """The head of a job's queue as placement reads it."""

    job: list[str | None]
    """The job fields asked for, in order."""
    task_keys: list[str]
    """The first queued tasks, in queue order."""
    rows: list[list[str | None]]
    """Each of those tasks' fields asked for, in order."""


class Finished(NamedTuple):
    """How applying one attempt's end went."""

    ok: bool
    detail: str
    """When applied: "job-completed", "job-terminating" or ""; when refused: why."""
    queued: bool = False
    """A task joined a queue: the task itself (a retry) or a dependent it released."""


@dataclass(frozen=True)
class BeatResult:
    """What a heartbeat changed: the node's pending command, attempts it must stop, stops it confirmed."""

    command: str
    stale: list[str]
    stopped: list[str]


class Transitions:
    """The registered scripts, bound to one Redis connection and key prefix."""

    def __init__(self, wire: Wire, keys: Keys) -> None:
        self.wire = wire
        self.keys = keys
        self._scripts = {name: Script(_load(name)) for name in SCRIPT_NAMES}

    async def _run(self, name: str, keys: Sequence[str], args: Iterable[Any]) -> Any:
        return await self.wire.run(self._scripts[name], keys, [str(arg) for arg in args])

    async def _run_each(self, name: str, calls: Sequence[tuple[Sequence[str], Iterable[Any]]]) -> list[Any]:
        """Run one script once per (keys, args), pipelined: each run is atomic, the round trips are shared."""
        runs = [(keys, [str(arg) for arg in args]) for keys, args in calls]
        return await self.wire.run_each(self._scripts[name], runs)

    async def linked(self, keys: Sequence[str], field: str) -> list[tuple[dict[str, str], dict[str, str]]]:
        """Each hash with the hash its `field` names (empty when either is absent), in one round trip."""
        if not keys:
            return []
        replies = cast(list[list[list[str]]], await self._run("linked", keys, [field]))
        return [(pairs(own), pairs(other)) for own, other in replies]

    async def queue_head(
        self, job_key: str, count: int, job_fields: Sequence[str], task_fields: Sequence[str]
    ) -> QueueHead:
        """A job's `job_fields`, its first `count` queued task keys and their `task_fields`, in one round trip."""
        keys = [self.keys.job(job_key), self.keys.job_queue(job_key)]
        reply = await self._run("queue_head", keys, [count, len(job_fields), *job_fields, *task_fields])
        job, queued, rows = cast(tuple[list[str | None], list[str], list[list[str | None]]], reply)
        return QueueHead(job, queued, rows)

    async def create(self, hash_key: str, index_key: str, member: str, fields: Mapping[str, str]) -> str | None:
        """Create an entity; None on success, else the id of the entity that already exists."""
        flat = [item for pair in fields.items() for item in pair]
        result = cast(list[str], await self._run("create", [hash_key, index_key], [member, *flat]))
        return None if result[0] == "ok" else result[1]

    async def add_tasks(
        self,
        job_key: str,
        pool_key: str,
        order: str,
        tasks: Sequence[tuple[str, Mapping[str, str]]],
        deadline_ms: int = 2**53,
    ) -> list[str]:
        """Add (task key, fields) pairs living until `deadline_ms`; returns the script's status list."""
        k = self.keys
        keys = [k.job(job_key), k.job_tasks(job_key), k.job_queue(job_key), k.pool_jobs(pool_key), k.seq()]
        keys += [k.task_deadlines(), k.job_dependency_states(job_key), k.job_dependents(job_key)]
        args: list[str] = [pool_key, order, str(deadline_ms)]
        for task_key, fields in tasks:
            args += [k.task(job_key, task_key), task_key, json.dumps(dict(fields))]
        return cast(list[str], await self._run("add_tasks", keys, args))

    async def offer(
        self, node_id: str, job_key: str, pool_key: str, now_ms: int, placements: Sequence[Placement]
    ) -> list[str]:
        """Offer tasks of one job to one node; returns the attempt ids actually placed."""
        k = self.keys
        keys = [
            k.node(node_id),
            k.node_attempts(node_id),
            k.offers(),
            k.job(job_key),
            k.job_queue(job_key),
            k.job_attempts(job_key),
            k.pool_jobs(pool_key),
        ]
        args: list[Any] = [now_ms, node_id]
        for placement in placements:
            args += [placement.task_key, k.attempt(placement.attempt_id), placement.attempt_id]
        return cast(list[str], await self._run("offer", keys, args))

    async def offer_gang(
        self, job_key: str, pool_key: str, task_key: str, now_ms: int, members: Sequence[tuple[str, str]]
    ) -> list[str]:
        """Offer a multi-instance task to (node id, attempt id) pairs at once, the primary first; ids placed."""
        k = self.keys
        keys = [k.job(job_key), k.job_queue(job_key), k.job_attempts(job_key), k.pool_jobs(pool_key), k.offers()]
        keys.append(task_key)
        args: list[Any] = [now_ms]
        for node_id, attempt_id in members:
            args += [node_id, k.node(node_id), k.node_attempts(node_id), attempt_id]
        args.append(k.attempt(""))
        return cast(list[str], await self._run("offer_gang", keys, args))

    async def claim_all(
        self, attempt_ids: Sequence[str], node_id: str, now: str, lease_expiry_ms: int, etag: str
    ) -> list[Claimed]:
        """Claim offered attempts, each on its own; how each went, with the records a claimed one needs."""
        k = self.keys
        calls = [
            ([k.attempt(attempt_id), k.offers(), k.leases()], [node_id, now, lease_expiry_ms, etag])
            for attempt_id in attempt_ids
        ]
        return [_claimed(reply) for reply in await self._run_each("claim", calls)]

    async def finish_all(self, ends: Sequence[tuple[str, AttemptFinish]]) -> list[Finished]:
        """Apply several attempts' ends, each on its own; how each went."""
        k = self.keys
        calls = []
        for attempt_id, end in ends:
            job_key = end.job_key
            keys = [k.attempt(attempt_id), k.leases(), k.job_dependency_states(job_key), k.job_dependents(job_key)]
            keys += [k.job_task_prefix(job_key), k.terminating_jobs(), k.offers()]
            flat = [item for pair in end.fields.items() for item in pair]
            calls.append((keys, [end.node_id, end.mode, end.result, end.now, end.etag, end.dependency_action, *flat]))
        return [
            Finished(status == "ok", detail, queued == ["1"])
            for status, detail, *queued in await self._run_each("finish", calls)
        ]

    async def stop_attempt(
        self, attempt_key: str, only_if: str, action: str, now: str, etag: str, failure: str = ""
    ) -> str | None:
        """Take an attempt from its node: `requeue`, `release` or `fail` its task; the task's outcome or None."""
        keys = [attempt_key, self.keys.leases(), self.keys.offers()]
        result = cast(list[str], await self._run("stop_attempt", keys, [only_if, action, now, etag, failure]))
        return result[2] if result[0] == "ok" else None

    async def heartbeat(self, beat: Heartbeat, now: str, now_ms: int, lease_expiry_ms: int, etag: str) -> BeatResult:
        """Record a node's heartbeat: its pending command, the attempts it must stop, the stops it confirmed."""
        k = self.keys
        keys = [k.node(beat.node_id), k.pool_nodes(beat.pool_key), k.leases(), k.removed_nodes()]
        keys.append(k.node_attempts(beat.node_id))
        args: list[Any] = [beat.node_id, beat.pool_key, beat.pool_id, now, now_ms, lease_expiry_ms, beat.slots]
        args += [beat.file_url, beat.ip, beat.version, beat.boot, etag, beat.state, beat.start_task, beat.runtime]
        args += [beat.config_version, "1" if beat.claims_in_flight else "0", *beat.attempt_keys]
        command, count, *rest = cast(list[Any], await self._run("heartbeat", keys, args))
        return BeatResult(str(command), list(rest[: int(count)]), list(rest[int(count) :]))

    async def prepared(self, node_id: str, job_key: str, now: str, etag: str) -> int:
        """The job's preparation succeeded on the node: its tasks there waiting in `preparing` run; how many."""
        keys = [self.keys.node_attempts(node_id), self.keys.job(job_key)]
        return int(await self._run("prepared", keys, [now, etag]))

    async def stopping(self, attempt_key: str) -> bool:
        """Ask the node to stop a running attempt; its task is queued again once the stop is confirmed."""
        return cast(list[str], await self._run("stopping", [attempt_key], []))[0] == "stopping"

    async def end_job(
        self, job_key: str, pool_key: str, target: str, now: str, etag: str, reason: str, failure: str
    ) -> list[str]:
        """Terminate (target completed) or begin deleting a job; returns the script's status list."""
        k = self.keys
        keys = [k.job(job_key), k.job_attempts(job_key), k.leases(), k.offers(), k.pool_jobs(pool_key)]
        keys.append(k.terminating_jobs())
        return cast(list[str], await self._run("end_job", keys, [target, now, etag, reason, failure]))

    async def node_silent(self, node_id: str, cutoff_ms: int, now: str, etag: str) -> bool:
        """Mark a node unknown if it has not been heard from since `cutoff_ms`; True when it changed."""
        return bool(await self._run("node_silent", [self.keys.node(node_id)], [cutoff_ms, now, etag]))

    async def update_if(
        self, key: str, field: str, expected: str, fields: Mapping[str, str], etag: str | None = None
    ) -> list[str]:
        """Set fields of an entity if `field` holds one of `expected` (comma-separated, or "*") and, when `etag`
        is given, its ETag is that one; the status list."""
        flat = [item for pair in fields.items() for item in pair]
        return cast(list[str], await self._run("update_if", [key], [field, expected, etag or "", *flat]))

    async def remove_node(self, node_id: str, pool_key: str) -> bool:
        """Forget a node that runs nothing any more; False while attempts still live on it."""
        k = self.keys
        keys = [k.node(node_id), k.pool_nodes(pool_key), k.node_attempts(node_id), k.removed_nodes()]
        result = cast(list[str], await self._run("remove_node", keys, [node_id]))
        return result[0] == "ok"

    async def delete_task(self, job_key: str, task_key: str, waits_for: Sequence[str] = ()) -> str:
        """Delete a task that holds no attempt (and leave the dependents sets of `waits_for`); the status."""
        k = self.keys
        keys = [k.task(job_key, task_key), k.job(job_key), k.job_tasks(job_key), k.job_queue(job_key)]
        keys += [k.task_deadlines(), k.job_dependents(job_key)]
        return cast(list[str], await self._run("delete_task", keys, [task_key, *waits_for]))[0]

    async def lease_grace(self, floor_ms: int) -> int:
        """Extend every running lease to at least `floor_ms`; how many were extended."""
        return int(await self._run("lease_grace", [self.keys.leases()], [floor_ms]))

    async def close_task(self, job_key: str, task_key: str, now: str, etag: str, failure: str) -> list[str]:
        """Complete a task that holds no attempt as failed; the script's status list."""
        k = self.keys
        keys = [k.task(job_key, task_key), k.job(job_key), k.job_queue(job_key)]
        return cast(list[str], await self._run("close_task", keys, [now, etag, failure]))

    async def reactivate(self, job_key: str, pool_key: str, task_key: str, now: str, etag: str) -> list[str]:
        """Put a failed task back in the queue with retryCount 0; the script's status list."""
        k = self.keys
        keys = [k.task(job_key, task_key), k.job(job_key), k.job_queue(job_key), k.pool_jobs(pool_key),
                k.job_dependency_states(job_key)]  # fmt: skip
        return cast(list[str], await self._run("reactivate", keys, [now, etag]))
