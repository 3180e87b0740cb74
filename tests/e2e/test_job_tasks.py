"""Job preparation and release tasks through the official SDK, on the two agents of a local stack."""

from __future__ import annotations

import pytest
from azure.batch import BatchClient, models
from azure.core.exceptions import HttpResponseError

from batchyard.services import Layout
from tests.support.batch import batch_client, completed, until
from tests.support.stack import LocalStack

pytestmark = pytest.mark.e2e

LOCAL = models.BatchPoolInfo(pool_id="local")
READ_MARK = "/bin/sh -c 'cat $AZ_BATCH_JOB_PREP_WORKING_DIR/mark'"


def _statuses(client: BatchClient, job_id: str) -> list[models.BatchJobPreparationAndReleaseTaskStatus]:
    return list(client.list_job_preparation_and_release_task_status(job_id))


def _all_completed(client: BatchClient, job_id: str) -> bool:
    return all(s.job_preparation_task_execution_info.state == "completed" for s in _statuses(client, job_id))


def _stdout(client: BatchClient, job_id: str, task_id: str) -> str:
    return b"".join(client.download_task_file(job_id, task_id, "stdout.txt")).decode()


def test_preparation_runs_once_per_node_before_the_jobs_tasks(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    preparation = models.BatchJobPreparationTask(
        command_line="/bin/sh -c 'sleep 2; echo prepared-$AZ_BATCH_NODE_ID > $AZ_BATCH_JOB_PREP_WORKING_DIR/mark'"
    )
    client.create_job(models.BatchJobCreateOptions(id="prepared", pool_info=LOCAL, job_preparation_task=preparation))
    tasks = [models.BatchTaskCreateOptions(id=f"t{i}", command_line=READ_MARK) for i in range(6)]
    client.create_task_collection("prepared", models.BatchTaskGroup(task_values=tasks))
    # While the preparation runs, the tasks waiting for it show `preparing`
    until("a task to be preparing", lambda: any(t.state == "preparing" for t in client.list_tasks("prepared")))
    for index in range(6):
        task = completed(client, "prepared", f"t{index}")
        # Each task read what the preparation of its own node wrote
        assert task.execution_info.exit_code == 0
        assert _stdout(client, "prepared", f"t{index}").strip() == f"prepared-{task.node_info.node_id}"
    nodes = {client.get_task("prepared", f"t{i}").node_info.node_id for i in range(6)}
    statuses = _statuses(client, "prepared")
    assert {status.node_id for status in statuses} == nodes
    for status in statuses:
        info = status.job_preparation_task_execution_info
        assert (info.state, info.exit_code, info.result, info.retry_count) == ("completed", 0, "success", 0)
        assert info.task_root_directory.endswith("jobpreparation")


def test_a_failed_preparation_keeps_the_job_off_the_node_but_not_other_jobs(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    failing = models.BatchJobPreparationTask(command_line="/bin/sh -c 'exit 9'")
    client.create_job(models.BatchJobCreateOptions(id="unpreparable", pool_info=LOCAL, job_preparation_task=failing))
    client.create_task("unpreparable", models.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    # Both nodes try the preparation once and fail; the task goes back to active and runs nowhere
    until("both nodes to fail the preparation", lambda: len(_statuses(client, "unpreparable")) == 2)
    until(
        "both preparations to complete",
        lambda: all(
            s.job_preparation_task_execution_info.state == "completed" for s in _statuses(client, "unpreparable")
        ),
    )
    for status in _statuses(client, "unpreparable"):
        info = status.job_preparation_task_execution_info
        assert (info.exit_code, info.result, info.failure_info.code) == (9, "failure", "FailureExitCode")
    until("the task to be active again", lambda: client.get_task("unpreparable", "t").state == "active")
    # The nodes still run other jobs' tasks
    client.create_job(models.BatchJobCreateOptions(id="unaffected", pool_info=LOCAL))
    client.create_task("unaffected", models.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    assert completed(client, "unaffected", "t").execution_info.exit_code == 0
    assert client.get_task("unpreparable", "t").state == "active"


def test_release_runs_where_preparation_ran_before_the_job_completes(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    preparation = models.BatchJobPreparationTask(command_line="/bin/true")
    release = models.BatchJobReleaseTask(
        command_line="/bin/sh -c 'sleep 1; touch $AZ_BATCH_NODE_SHARED_DIR/released-$AZ_BATCH_JOB_ID'"
    )
    options = models.BatchJobCreateOptions(
        id="released", pool_info=LOCAL, job_preparation_task=preparation, job_release_task=release,
        all_tasks_complete_mode="terminatejob",
    )  # fmt: skip
    client.create_job(options)
    tasks = [models.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/sleep 0.5") for i in range(4)]
    client.create_task_collection("released", models.BatchTaskGroup(task_values=tasks))
    # When the last task completes the job terminates, and completes only after every release ran
    until("the job to terminate", lambda: client.get_job("released").state in ("terminating", "completed"))
    until("the job to complete", lambda: client.get_job("released").state == "completed")
    assert client.get_job("released").execution_info.termination_reason == "AllTasksComplete"
    statuses = _statuses(client, "released")
    assert statuses
    for status in statuses:
        info = status.job_release_task_execution_info
        assert (info.state, info.exit_code, info.result) == ("completed", 0, "success")
        assert info.end_time <= client.get_job("released").execution_info.end_time


def test_release_needs_preparation_and_at_most_fifteen_minutes(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    release = models.BatchJobReleaseTask(command_line="/bin/true")
    with pytest.raises(HttpResponseError) as alone:
        client.create_job(models.BatchJobCreateOptions(id="bad-release", pool_info=LOCAL, job_release_task=release))
    assert alone.value.status_code == 400
    long = models.BatchJobReleaseTask(command_line="/bin/true", max_wall_clock_time="PT16M")
    preparation = models.BatchJobPreparationTask(command_line="/bin/true")
    options = models.BatchJobCreateOptions(
        id="bad-release", pool_info=LOCAL, job_preparation_task=preparation, job_release_task=long
    )
    with pytest.raises(HttpResponseError) as too_long:
        client.create_job(options)
    assert (too_long.value.status_code, too_long.value.error.code) == (400, "InvalidPropertyValue")


def test_deleting_an_active_job_runs_its_release_first(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    preparation = models.BatchJobPreparationTask(command_line="/bin/true")
    release = models.BatchJobReleaseTask(
        command_line="/bin/sh -c 'touch $AZ_BATCH_NODE_SHARED_DIR/released-$AZ_BATCH_JOB_ID'"
    )
    options = models.BatchJobCreateOptions(
        id="deleted-released", pool_info=LOCAL, job_preparation_task=preparation, job_release_task=release
    )
    client.create_job(options)
    client.create_task("deleted-released", models.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    node_id = completed(client, "deleted-released", "t").node_info.node_id
    client.begin_delete_job("deleted-released", polling_interval=0)
    until("the job to be gone", lambda: not any(job.id == "deleted-released" for job in client.list_jobs()))
    marker = Layout(shared_stack.data_dir).node_root(node_id) / "shared" / "released-deleted-released"
    assert marker.exists()


def test_without_wait_for_success_tasks_start_while_preparation_runs(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    preparation = models.BatchJobPreparationTask(command_line="/bin/sleep 3", wait_for_success=False)
    options = models.BatchJobCreateOptions(id="unwaited", pool_info=LOCAL, job_preparation_task=preparation)
    client.create_job(options)
    client.create_task("unwaited", models.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    task = completed(client, "unwaited", "t")
    until(
        "the preparation to complete",
        lambda: _all_completed(client, "unwaited") and bool(_statuses(client, "unwaited")),
    )
    (status,) = _statuses(client, "unwaited")
    assert task.execution_info.end_time < status.job_preparation_task_execution_info.end_time
