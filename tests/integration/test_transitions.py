"""The store's compare-and-set transitions against a real redis-server."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from controller.store.keys import Keys
from controller.store.transitions import AttemptFinish, Finished, Heartbeat, Placement, Transitions
from controller.store.wire import Wire

NOW = "2026-01-01T00:00:00.000000Z"


class Store(Transitions):
    """The transitions under test, with a redis-py client of their own to look at what they wrote."""

    def __init__(self, url: str, keys: Keys) -> None:
        super().__init__(Wire(url), keys)
        self.redis = Redis.from_url(url, decode_responses=True)


@pytest.fixture
async def store(redis_server: Any) -> AsyncIterator[Store]:
    store = Store(redis_server.url, Keys(f"test-{uuid.uuid4().hex}"))
    yield store
    await store.redis.aclose()
    await store.wire.aclose()


async def _job_with_tasks(store: Transitions, count: int, on_all_complete: str = "noaction") -> list[str]:
    keys = store.keys
    fields = {"id": "Job", "key": "job", "state": "active", "stt": NOW, "pool": "p", "pool_id": "p", "order": "1"}
    counters = {name: "0" for name in ("n_active", "n_running", "n_completed", "n_succeeded", "n_failed")}
    await store.create(keys.job("job"), keys.jobs(), "job", {**fields, **counters, "on_all_complete": on_all_complete})
    tasks = [
        (f"t{i}", {"id": f"t{i}", "job": "Job", "state": "active", "stt": NOW, "slots": "1"}) for i in range(count)
    ]
    result = await store.add_tasks("job", "p", "1", tasks)
    assert result[0] == "ok"
    return [keys.task("job", task_key) for task_key, _ in tasks]


async def _node(store: Transitions, node_id: str = "n1", slots: int = 2) -> None:
    beat = Heartbeat(node_id, "p", "p", slots, "http://127.0.0.1:1", "127.0.0.1", "1", NOW, [])
    await store.heartbeat(beat, NOW, 0, 0, "0x1")


async def claim(
    store: Transitions, attempt_id: str, node_id: str, now: str, expiry: int, etag: str
) -> tuple[bool, str]:
    (result,) = await store.claim_all([attempt_id], node_id, now, expiry, etag)
    return result.ok, result.detail


async def finish(store: Transitions, attempt_id: str, end: AttemptFinish) -> tuple[bool, str]:
    (result,) = await store.finish_all([(attempt_id, end)])
    return result.ok, result.detail


def _completed(etag: str, fields: dict[str, str], action: str = "satisfy") -> AttemptFinish:
    return AttemptFinish("job", "n1", "completed", "success", NOW, etag, fields, dependency_action=action)


async def _running(store: Transitions, task_key: str, node_id: str = "n1") -> str:
    attempt_id = uuid.uuid4().hex
    assert await store.offer(node_id, "job", "p", 0, [Placement(task_key, attempt_id)]) == [attempt_id]
    ok, _ = await claim(store, attempt_id, node_id, NOW, int(time.time() * 1000) + 60_000, "0x2")
    assert ok
    return attempt_id


async def test_two_claims_of_one_attempt_only_one_wins(store: Transitions) -> None:
    # Given one offered attempt
    (task_key,) = await _job_with_tasks(store, 1)
    await _node(store)
    attempt_id = uuid.uuid4().hex
    await store.offer("n1", "job", "p", 0, [Placement(task_key, attempt_id)])
    # When the same dispatch is claimed twice at once
    results = await asyncio.gather(*[claim(store, attempt_id, "n1", NOW, 1, "0x2") for _ in range(2)])
    # Then exactly one claim succeeds
    assert sorted(ok for ok, _ in results) == [False, True]


async def test_a_claim_returns_the_records_as_it_left_them(store: Transitions) -> None:
    (task_key,) = await _job_with_tasks(store, 1)
    await _node(store)
    attempt_id = uuid.uuid4().hex
    await store.offer("n1", "job", "p", 0, [Placement(task_key, attempt_id)])
    (claimed,) = await store.claim_all([attempt_id], "n1", NOW, 1, "0x2")
    assert claimed.ok and claimed.detail == task_key
    assert claimed.task == await store.redis.hgetall(task_key)
    assert claimed.task["state"] == "running" and claimed.attempt["state"] == "running"
    assert claimed.job == await store.redis.hgetall(store.keys.job("job"))
    # A refused claim carries only the reason
    (again,) = await store.claim_all([attempt_id], "n1", NOW, 1, "0x3")
    assert (again.ok, again.task, again.job, again.attempt) == (False, {}, {}, {})


async def test_linked_reads_each_hash_with_the_one_it_names(store: Transitions) -> None:
    await store.redis.hset("L:a", mapping={"task": "L:t", "x": "1"})
    await store.redis.hset("L:t", mapping={"id": "t"})
    await store.redis.hset("L:b", mapping={"task": "L:gone"})
    await store.redis.hset("L:c", mapping={"other": "1"})
    assert await store.linked(["L:a", "L:b", "L:c", "L:missing"], "task") == [
        ({"task": "L:t", "x": "1"}, {"id": "t"}),
        ({"task": "L:gone"}, {}),
        ({"other": "1"}, {}),
        ({}, {}),
    ]


async def test_queue_head_reads_the_job_and_its_first_queued_tasks_in_order(store: Transitions) -> None:
    task_keys = await _job_with_tasks(store, 3)
    await store.redis.hset(store.keys.job("job"), "max_parallel", "2")
    head = await store.queue_head("job", 2, ["max_parallel", "prep"], ["id", "slots", "affinity"])
    assert head.job == ["2", None]
    assert head.task_keys == task_keys[:2]
    assert head.rows == [["t0", "1", None], ["t1", "1", None]]
    everything = await store.queue_head("job", 10, ["state"], ["id"])
    assert (everything.job, everything.rows) == (["active"], [["t0"], ["t1"], ["t2"]])


async def test_claim_from_another_node_is_refused(store: Transitions) -> None:
    (task_key,) = await _job_with_tasks(store, 1)
    await _node(store, "n1")
    attempt_id = uuid.uuid4().hex
    await store.offer("n1", "job", "p", 0, [Placement(task_key, attempt_id)])
    ok, reason = await claim(store, attempt_id, "n2", NOW, 1, "0x2")
    assert not ok and "another node" in reason


async def test_offer_never_exceeds_free_slots(store: Transitions) -> None:
    task_keys = await _job_with_tasks(store, 3)
    await _node(store, slots=2)
    placements = [Placement(key, uuid.uuid4().hex) for key in task_keys]
    placed = await store.offer("n1", "job", "p", 0, placements)
    assert len(placed) == 2
    assert await store.redis.hget(store.keys.node("n1"), "used") == "2"


async def test_expired_lease_requeues_and_late_report_is_refused(store: Transitions) -> None:
    # Given a running attempt
    (task_key,) = await _job_with_tasks(store, 1)
    await _node(store)
    attempt_id = await _running(store, task_key)
    # When its lease is taken back
    outcome = await store.stop_attempt(store.keys.attempt(attempt_id), "running", "requeue", NOW, "0x3")
    # Then the task is active again with requeueCount 1 and queued, and the old attempt cannot report
    task = await store.redis.hgetall(task_key)
    assert (outcome, task["state"], task["requeues"], task.get("retries", "0")) == ("queued", "active", "1", "0")
    assert await store.redis.zscore(store.keys.job_queue("job"), task_key) is not None
    ok, _ = await finish(store, attempt_id, _completed("0x4", {"state": "completed"}))
    assert not ok
    assert await store.redis.hget(task_key, "state") == "active"


async def test_finish_frees_slots_and_counts(store: Transitions) -> None:
    (task_key,) = await _job_with_tasks(store, 1, on_all_complete="terminatejob")
    await _node(store)
    attempt_id = await _running(store, task_key)
    ok, detail = await finish(store, attempt_id, _completed("0x4", {"state": "completed"}))
    job = await store.redis.hgetall(store.keys.job("job"))
    assert (ok, detail) == (True, "job-completed")
    assert (job["state"], job["reason"], job["n_succeeded"], job["n_running"]) == (
        "completed",
        "AllTasksComplete",
        "1",
        "0",
    )
    assert await store.redis.hget(store.keys.node("n1"), "used") == "0"


async def test_terminating_a_job_fails_running_tasks_and_keeps_queued_ones_active(store: Transitions) -> None:
    running_key, queued_key = await _job_with_tasks(store, 2)
    await _node(store, slots=1)
    attempt_id = await _running(store, running_key)
    failure = json.dumps({"category": "usererror", "code": "TaskEnded", "message": "x"})
    assert await store.end_job("job", "p", "completed", NOW, "0x5", "UserTerminate", failure) == ["ok"]
    assert await store.redis.hget(running_key, "state") == "completed"
    assert await store.redis.hget(queued_key, "state") == "active"
    beat = await store.heartbeat(
        Heartbeat("n1", "p", "p", 1, "u", "127.0.0.1", "1", NOW, [store.keys.attempt(attempt_id)]), NOW, 0, 0, "0x6"
    )
    assert beat.stale == [store.keys.attempt(attempt_id)]


async def test_adding_a_task_twice_keeps_the_first(store: Transitions) -> None:
    await _job_with_tasks(store, 1)
    result = await store.add_tasks("job", "p", "1", [("t0", {"id": "T0", "state": "active"})])
    assert result == ["ok", "t0"]


async def test_a_stopping_attempt_keeps_its_task_running_until_its_node_confirms_the_stop(store: Transitions) -> None:
    # Given a running attempt that the controller asks its node to stop
    (task_key,) = await _job_with_tasks(store, 1)
    await _node(store, slots=1)
    attempt_key = store.keys.attempt(await _running(store, task_key))
    assert await store.stopping(attempt_key)
    assert not await store.stopping(attempt_key)
    # When the node still lists it, it is told to stop it, and the task stays running on its slot
    still = Heartbeat("n1", "p", "p", 1, "u", "127.0.0.1", "1", NOW, [attempt_key])
    beat = await store.heartbeat(still, NOW, 0, 0, "0x3")
    assert (beat.stale, beat.stopped) == ([attempt_key], [])
    assert await store.redis.hget(task_key, "state") == "running"
    assert await store.redis.hget(store.keys.node("n1"), "used") == "1"
    # Then the first heartbeat without it confirms the stop, and the task is queued again with one more requeue
    beat = await store.heartbeat(Heartbeat("n1", "p", "p", 1, "u", "127.0.0.1", "1", NOW, []), NOW, 0, 0, "0x4")
    assert (beat.stale, beat.stopped) == ([], [attempt_key])
    assert await store.stop_attempt(attempt_key, "stopping", "requeue", NOW, "0x5") == "queued"
    assert await store.redis.hmget(task_key, "state", "requeues") == ["active", "1"]
    assert await store.redis.hget(store.keys.node("n1"), "used") == "0"


async def test_a_heartbeat_built_while_a_claim_was_unanswered_confirms_no_stop(store: Transitions) -> None:
    # Given a running attempt that the controller asks its node to stop
    (task_key,) = await _job_with_tasks(store, 1)
    await _node(store, slots=1)
    attempt_key = store.keys.attempt(await _running(store, task_key))
    assert await store.stopping(attempt_key)
    # When a heartbeat without it says a claim was unanswered as it was built
    unsure = Heartbeat("n1", "p", "p", 1, "u", "127.0.0.1", "1", NOW, [], claims_in_flight=True)
    beat = await store.heartbeat(unsure, NOW, 0, 0, "0x3")
    # Then the stop is not confirmed: the node may run the attempt it had just claimed
    assert beat.stopped == []
    assert await store.redis.hget(attempt_key, "state") == "stopping"


async def test_a_report_from_a_stopping_attempt_is_refused(store: Transitions) -> None:
    (task_key,) = await _job_with_tasks(store, 1)
    await _node(store, slots=1)
    attempt_id = await _running(store, task_key)
    assert await store.stopping(store.keys.attempt(attempt_id))
    ok, _ = await finish(store, attempt_id, _completed("0x3", {"exit_code": "0"}))
    assert not ok
    assert await store.redis.hget(task_key, "state") == "running"


async def _add(store: Transitions, task_id: str, deps: str = "", number: str = "") -> str:
    fields = {"id": task_id, "job": "Job", "state": "active", "stt": NOW, "slots": "1", "key": task_id.lower()}
    if deps:
        fields["_deps"] = deps
    if number:
        fields["num"] = number
    result = await store.add_tasks("job", "p", "1", [(task_id.lower(), fields)])
    assert result == ["ok", ""], result
    return store.keys.task("job", task_id.lower())


async def _queued(store: Transitions) -> list[str]:
    return list(await store.redis.zrange(store.keys.job_queue("job"), 0, -1))


async def _complete(store: Transitions, task_key: str, action: str) -> Finished:
    attempt_id = await _running(store, task_key)
    (result,) = await store.finish_all([(attempt_id, _completed("0x9", {"state": "completed"}, action))])
    assert result.ok
    return result


async def test_a_dependent_joins_the_queue_when_its_last_parent_is_satisfied(store: Transitions) -> None:
    await _job_with_tasks(store, 0)
    await _node(store, slots=4)
    # Given two parents, and a child added before one of them that waits for both (one by id, one by range)
    first = await _add(store, "a")
    child = await _add(store, "c", deps="a,#7")
    late = await _add(store, "007", number="7")
    assert await _queued(store) == [first, late]
    assert await store.redis.hget(child, "waiting") == "2"
    # When the first completes it still waits; when the integer-named one completes it is queued
    assert not (await _complete(store, first, "satisfy")).queued
    assert child not in await _queued(store)
    assert (await _complete(store, late, "satisfy")).queued
    assert await _queued(store) == [child]
    # And a task added after its parents were satisfied is queued at once
    again = await _add(store, "d", deps="a,#7")
    assert await _queued(store) == [child, again]


async def test_a_blocking_parent_keeps_its_dependents_out_of_the_queue(store: Transitions) -> None:
    await _job_with_tasks(store, 0)
    await _node(store, slots=2)
    parent = await _add(store, "p1")
    child = await _add(store, "c1", deps="p1")
    assert not (await _complete(store, parent, "block")).queued
    assert await store.redis.hget(store.keys.job_dependency_states("job"), "p1") == "blocked"
    assert await _queued(store) == []
    # A dependent added after the parent blocked waits as well, and is not queued
    later = await _add(store, "c2", deps="p1")
    assert await store.redis.hget(later, "waiting") == "1"
    assert await _queued(store) == []
    assert await store.redis.hget(child, "state") == "active"


async def _fail(store: Transitions, task_key: str) -> None:
    attempt_id = await _running(store, task_key)
    failed = AttemptFinish("job", "n1", "completed", "failure", NOW, "0x9", {"state": "completed"}, "block")
    (result,) = await store.finish_all([(attempt_id, failed)])
    assert result.ok


async def test_a_reactivated_blocking_parent_that_succeeds_releases_its_dependents(store: Transitions) -> None:
    await _job_with_tasks(store, 0)
    await _node(store, slots=2)
    # Given a parent with an integer id that failed and blocked a dependent by id and one by range
    parent = await _add(store, "1", number="1")
    by_id = await _add(store, "c1", deps="1")
    by_range = await _add(store, "c2", deps="#1")
    await _fail(store, parent)
    assert await _queued(store) == []
    # When the parent is reactivated, a dependent added meanwhile waits for it too
    assert await store.reactivate("job", "p", "1", NOW, "0xa") == ["ok"]
    assert await _queued(store) == [parent]
    added = await _add(store, "c3", deps="1")
    assert await _queued(store) == [parent]
    # And when it succeeds this time, all three join the queue
    assert (await _complete(store, parent, "satisfy")).queued
    assert await _queued(store) == [by_id, by_range, added]


async def test_a_retry_puts_the_task_back_in_the_queue_and_says_so(store: Transitions) -> None:
    (task_key,) = await _job_with_tasks(store, 1)
    await _node(store, slots=1)
    attempt_id = await _running(store, task_key)
    retry = AttemptFinish("job", "n1", "retry", "", NOW, "0x4", {"state": "active"})
    (result,) = await store.finish_all([(attempt_id, retry)])
    assert result.ok and result.queued
    assert await _queued(store) == [task_key]


async def test_a_deleted_dependent_no_longer_counts_on_its_parents(store: Transitions) -> None:
    await _job_with_tasks(store, 0)
    await _node(store, slots=2)
    # Given a dependent of a parent that blocked it, deleted and added again waiting for another task
    parent = await _add(store, "p1")
    await _add(store, "c1", deps="p1")
    await _fail(store, parent)
    assert await store.delete_task("job", "c1", ["p1"]) == "ok"
    again = await _add(store, "c1", deps="other")
    # When the reactivated parent succeeds, the new task still waits for its own parent
    assert await store.reactivate("job", "p", "p1", NOW, "0xa") == ["ok"]
    await _complete(store, parent, "satisfy")
    assert await store.redis.hget(again, "waiting") == "1"
    assert again not in await _queued(store)


async def test_an_update_for_an_etag_changes_only_the_entity_that_still_has_it(store: Store) -> None:
    key = store.keys.job("etagged")
    await store.redis.hset(key, mapping={"state": "active", "etag": "0x2", "priority": "1"})
    stale = await store.update_if(key, "state", "active", {"priority": "5", "etag": "0x3"}, etag="0x1")
    assert stale == ["etag", "0x2"]
    assert await store.redis.hmget(key, "priority", "etag") == ["1", "0x2"]
    first, second = await asyncio.gather(
        store.update_if(key, "state", "active", {"priority": "6", "etag": "0x4"}, etag="0x2"),
        store.update_if(key, "state", "active", {"priority": "7", "etag": "0x5"}, etag="0x2"),
    )
    assert sorted([first[0], second[0]]) == ["etag", "ok"]
    assert await store.redis.hget(key, "priority") in ("6", "7")
    assert await store.update_if(key, "state", "active", {"priority": "8"}) == ["ok"]
