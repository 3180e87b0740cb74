"""Job lifecycle semantics through the official SDK: task dependencies, exit conditions, job disable and enable."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from azure.batch import BatchClient, models
from azure.core.exceptions import HttpResponseError

from tests.support.batch import batch_client, completed, until
from tests.support.stack import LocalStack

pytestmark = pytest.mark.e2e

LOCAL = models.BatchPoolInfo(pool_id="local")


def _job(client: BatchClient, job_id: str, **options: object) -> None:
    client.create_job(models.BatchJobCreateOptions(id=job_id, pool_info=LOCAL, **options))  # type: ignore[arg-type]


def _task(task_id: str, command: str, **options: object) -> models.BatchTaskCreateOptions:
    return models.BatchTaskCreateOptions(id=task_id, command_line=command, **options)  # type: ignore[arg-type]


def _never_started(client: BatchClient, job_id: str, task_id: str, seconds: float = 3.0) -> bool:
    """True when the task stays active without an execution for `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        task = client.get_task(job_id, task_id)
        if task.state != "active" or (task.execution_info and task.execution_info.start_time):
            return False
        time.sleep(0.3)
    return True


def test_a_dependent_waits_for_parents_by_id_and_by_range_even_when_added_first(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    _job(client, "deps", uses_task_dependencies=True)
    # Given a task that depends on "setup" and on the integer ids 1..2, added before any of them
    depends = models.BatchTaskDependencies(task_ids=["Setup"], task_id_ranges=[models.BatchTaskIdRange(start=1, end=2)])
    client.create_task("deps", _task("merge", "/bin/true", depends_on=depends))
    assert _never_started(client, "deps", "merge", 1.0)
    # When the parents are added ("01" counts as 1) and complete
    parents = [_task(task_id, "/bin/sleep 1") for task_id in ("setup", "01", "2")]
    client.create_task_collection("deps", models.BatchTaskGroup(task_values=parents))
    merge = completed(client, "deps", "merge")
    # Then it ran only after the last parent ended
    ends = [completed(client, "deps", task_id).execution_info.end_time for task_id in ("setup", "01", "2")]
    assert merge.execution_info.exit_code == 0
    assert merge.execution_info.start_time >= max(ends)
    assert merge.depends_on.task_ids == ["Setup"]


def test_a_failed_parent_blocks_its_dependents_unless_its_exit_condition_satisfies(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    _job(client, "blocking", uses_task_dependencies=True)
    satisfy = models.ExitConditions(
        exit_codes=[models.ExitCodeMapping(code=3, exit_options=models.ExitOptions(dependency_action="satisfy"))]
    )
    tasks = [
        _task("fails", "/bin/sh -c 'exit 2'"),
        _task("tolerated", "/bin/sh -c 'exit 3'", exit_conditions=satisfy),
        _task("blocked", "/bin/true", depends_on=models.BatchTaskDependencies(task_ids=["fails"])),
        _task("runs", "/bin/true", depends_on=models.BatchTaskDependencies(task_ids=["tolerated"])),
    ]
    client.create_task_collection("blocking", models.BatchTaskGroup(task_values=tasks))
    assert completed(client, "blocking", "runs").execution_info.exit_code == 0
    assert completed(client, "blocking", "tolerated").execution_info.result == "failure"
    completed(client, "blocking", "fails")
    assert _never_started(client, "blocking", "blocked")


def test_a_reactivated_parent_that_succeeds_releases_the_dependents_it_blocked(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    _job(client, "second-chance", uses_task_dependencies=True)
    # Given a parent that fails its first run (it leaves a mark in the node's shared directory) and succeeds later
    mark = f"$AZ_BATCH_NODE_SHARED_DIR/second-chance-{uuid.uuid4().hex}"
    parent = _task("7", f"/bin/sh -c 'test -e {mark} && exit 0; touch {mark}; exit 2'")
    by_id = _task("by-id", "/bin/true", depends_on=models.BatchTaskDependencies(task_ids=["7"]))
    by_range = models.BatchTaskDependencies(task_id_ranges=[models.BatchTaskIdRange(start=7, end=7)])
    client.create_task_collection("second-chance", models.BatchTaskGroup(task_values=[parent, by_id]))
    assert completed(client, "second-chance", "7").execution_info.exit_code == 2
    assert _never_started(client, "second-chance", "by-id", 1.0)
    # When it is reactivated, and a dependent is added while it runs again
    client.reactivate_task("second-chance", "7")
    client.create_task("second-chance", _task("by-range", "/bin/true", depends_on=by_range))
    # Then its success releases both dependents, each of which starts after it ended
    parent_end = completed(client, "second-chance", "7").execution_info
    assert parent_end.exit_code == 0
    for task_id in ("by-id", "by-range"):
        execution = completed(client, "second-chance", task_id).execution_info
        assert execution.exit_code == 0
        assert execution.start_time >= parent_end.end_time


def test_dependencies_need_a_job_that_uses_them_and_a_bounded_list(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    _job(client, "plain")
    depends = models.BatchTaskDependencies(task_ids=["a"])
    with pytest.raises(HttpResponseError) as refused:
        client.create_task("plain", _task("b", "/bin/true", depends_on=depends))
    assert (refused.value.status_code, refused.value.error.code) == (400, "TaskDependenciesNotSpecifiedOnJob")
    _job(client, "long-deps", uses_task_dependencies=True)
    too_long = models.BatchTaskDependencies(task_ids=[f"parent-{i:058d}" for i in range(1000)])
    with pytest.raises(HttpResponseError) as long_list:
        client.create_task("long-deps", _task("b", "/bin/true", depends_on=too_long))
    assert (long_list.value.status_code, long_list.value.error.code) == (400, "TaskDependencyListTooLong")


def test_a_failed_task_terminates_its_job_when_the_job_performs_exit_actions(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    _job(client, "strict", task_failure_mode="performexitoptionsjobaction")
    # A failure listed with jobAction none leaves the job alone
    forgiven = models.ExitConditions(
        exit_codes=[models.ExitCodeMapping(code=5, exit_options=models.ExitOptions(job_action="none"))]
    )
    client.create_task("strict", _task("forgiven", "/bin/sh -c 'exit 5'", exit_conditions=forgiven))
    completed(client, "strict", "forgiven")
    assert client.get_job("strict").state == "active"
    # Any other failure takes the default jobAction, terminate, with reason TaskFailed
    client.create_task("strict", _task("fatal", "/bin/sh -c 'exit 6'"))
    until("the job to end", lambda: client.get_job("strict").state == "completed")
    assert client.get_job("strict").execution_info.termination_reason == "TaskFailed"
    with pytest.raises(HttpResponseError) as closed:
        client.create_task("strict", _task("late", "/bin/true"))
    assert closed.value.error.code == "JobCompleted"


def test_a_job_action_needs_a_job_that_performs_exit_actions(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    _job(client, "lenient")
    conditions = models.ExitConditions(default=models.ExitOptions(job_action="terminate"))
    with pytest.raises(HttpResponseError) as refused:
        client.create_task("lenient", _task("t", "/bin/true", exit_conditions=conditions))
    assert (refused.value.status_code, refused.value.error.code) == (400, "InvalidPropertyValue")


def test_disable_with_requeue_stops_running_work_until_the_job_is_enabled(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    _job(client, "pausable")
    client.create_task("pausable", _task("long", "/bin/sleep 2"))
    until("the task to run", lambda: client.get_task("pausable", "long").state == "running")
    # When the job is disabled with requeue, the task goes back to active and nothing of the job runs
    client.begin_disable_job("pausable", models.BatchJobDisableOptions(disable_tasks="requeue"), polling_interval=0)
    until("the job to be disabled", lambda: client.get_job("pausable").state == "disabled")
    until("the task to be requeued", lambda: client.get_task("pausable", "long").state == "active")
    client.create_task("pausable", _task("added", "/bin/true"))
    assert _never_started(client, "pausable", "added", 2.0)
    with pytest.raises(HttpResponseError) as again:
        client.begin_enable_job("pausable", polling_interval=0).result()
        client.begin_enable_job("pausable", polling_interval=0).result()
    assert again.value.status_code == 409
    # Then enabling runs both
    long = completed(client, "pausable", "long")
    assert (long.execution_info.exit_code, long.execution_info.requeue_count) == (0, 1)
    assert completed(client, "pausable", "added").execution_info.exit_code == 0


def test_disable_with_terminate_ends_running_tasks_and_wait_lets_them_finish(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    for job_id in ("ended", "waited"):
        _job(client, job_id)
        client.create_task(job_id, _task("t", "/bin/sleep 2"))
    for job_id, option in (("ended", "terminate"), ("waited", "wait")):
        until(f"{job_id} to run", lambda j=job_id: client.get_task(j, "t").state == "running")  # type: ignore[misc]
        options = models.BatchJobDisableOptions(disable_tasks=option)
        client.begin_disable_job(job_id, options, polling_interval=0)
    ended = completed(client, "ended", "t")
    assert ended.execution_info.failure_info.code == "TaskEnded"
    waited = completed(client, "waited", "t")
    assert (waited.execution_info.exit_code, waited.execution_info.failure_info) == (0, None)
    assert client.get_job("waited").state == "disabled"


def test_the_recommended_auto_termination_pattern_through_patch(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    # Create with noaction, add the tasks, then patch to terminatejob (the documented pattern)
    _job(client, "patched")
    tasks = [_task(f"t{i}", "/bin/true") for i in range(3)]
    client.create_task_collection("patched", models.BatchTaskGroup(task_values=tasks))
    for index in range(3):
        completed(client, "patched", f"t{index}")
    assert client.get_job("patched").state == "active"
    client.update_job("patched", models.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob", priority=50))
    until("the patched job to complete", lambda: client.get_job("patched").state == "completed")
    job = client.get_job("patched")
    assert (job.execution_info.termination_reason, job.priority) == ("AllTasksComplete", 50)


def test_terminatejob_cannot_go_back_to_noaction(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    _job(client, "one-way", all_tasks_complete_mode="noaction")
    client.create_task("one-way", _task("slow", "/bin/sleep 30"))
    client.update_job("one-way", models.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob"))
    with pytest.raises(HttpResponseError) as refused:
        client.update_job("one-way", models.BatchJobUpdateOptions(all_tasks_complete_mode="noaction"))
    assert (refused.value.status_code, refused.value.error.code) == (400, "InvalidPropertyValue")
    client.terminate_task("one-way", "slow")


def test_replacing_a_job_sets_what_is_given_and_resets_what_is_omitted(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    metadata = [models.BatchMetadataItem(name="team", value="render")]
    _job(client, "replaced", priority=20, metadata=metadata)
    # A job read back, changed and sent whole (its unlimited wall clock included) keeps what it carries
    job = client.get_job("replaced")
    job.priority = 30
    client.replace_job("replaced", job)
    again = client.get_job("replaced")
    assert (again.priority, [(m.name, m.value) for m in again.metadata or []]) == (30, [("team", "render")])
    # A replacement that names only the pool resets everything else to its default
    client.replace_job("replaced", models.BatchJob(pool_info=LOCAL))
    reset = client.get_job("replaced")
    assert (reset.priority, reset.metadata, reset.constraints.max_task_retry_count) == (0, None, 0)
    assert reset.all_tasks_complete_mode == "noaction"
    # Once it terminates on its own, leaving that out of a replacement is refused
    client.update_job("replaced", models.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob"))
    with pytest.raises(HttpResponseError) as refused:
        client.replace_job("replaced", models.BatchJob(pool_info=LOCAL))
    assert (refused.value.status_code, refused.value.error.code) == (400, "InvalidPropertyValue")


def test_a_replacement_without_a_wall_clock_lifts_the_jobs_limit(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    _job(client, "unbounded", constraints=models.BatchJobConstraints(max_wall_clock_time=timedelta(seconds=3)))
    client.create_task("unbounded", _task("long", "/bin/sleep 30"))
    client.replace_job("unbounded", models.BatchJob(pool_info=LOCAL))
    until("the task to run", lambda: client.get_task("unbounded", "long").state == "running")
    time.sleep(5)
    assert client.get_job("unbounded").state == "active"
    client.begin_terminate_job("unbounded", {"terminateReason": "done"}, polling_interval=0).result()


def test_deleting_a_task_stops_it_and_removes_its_record_and_files(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    _job(client, "pruned")
    client.create_task("pruned", _task("done", "/bin/sh -c 'echo kept-until-deleted'"))
    client.create_task("pruned", _task("busy", "/bin/sleep 60"))
    done = completed(client, "pruned", "done")
    until("busy to run", lambda: client.get_task("pruned", "busy").state == "running")
    for task_id in ("done", "busy"):
        client.delete_task("pruned", task_id)
        with pytest.raises(HttpResponseError) as gone:
            client.get_task("pruned", task_id)
        assert gone.value.status_code == 404
    # The files of the completed task are removed from its node
    node_files = lambda: [f.name for f in client.list_node_files("local", done.node_info.node_id, recursive=True)]  # noqa: E731
    until("its directory to be removed", lambda: not any("workitems/pruned/job-1/done/" in n for n in node_files()))
    counts = client.get_job_task_counts("pruned")
    assert (counts.task_counts.active, counts.task_counts.running, counts.task_counts.completed) == (0, 0, 0)
