"""The official azure-batch 15.x SDK drives the stack end to end."""

from __future__ import annotations

import pytest
from azure.batch import models

from tests.e2e.blobs import read_blob, writable_container
from tests.support.batch import batch_client, completed
from tests.support.stack import LocalStack

pytestmark = pytest.mark.e2e


def test_task_runs_and_its_output_lands_in_blob_storage(shared_stack: LocalStack) -> None:
    # Given a job on the local pool and a container to upload to
    client = batch_client(shared_stack)
    container, container_url = writable_container(shared_stack.connection_string)
    client.create_job(models.BatchJobCreateOptions(id="sdk15-job", pool_info=models.BatchPoolInfo(pool_id="local")))
    output = models.OutputFile(
        file_pattern="result.txt",
        destination=models.OutputFileDestination(
            container=models.OutputFileBlobContainerDestination(container_url=container_url, path="sdk15/result.txt")
        ),
        upload_options=models.OutputFileUploadConfiguration(
            upload_condition=models.OutputFileUploadCondition.TASK_SUCCESS
        ),
    )
    command = "/bin/sh -c 'echo hello from $AZ_BATCH_TASK_ID; echo computed > result.txt'"
    # When a task that writes a file is added and runs
    client.create_task(
        "sdk15-job", models.BatchTaskCreateOptions(id="writer", command_line=command, output_files=[output])
    )
    task = completed(client, "sdk15-job", "writer")
    # Then it succeeded, its stdout is readable through the files API, and the file is in Azurite
    assert task.execution_info.result == models.BatchTaskExecutionResult.SUCCESS
    assert task.execution_info.exit_code == 0
    stdout = b"".join(client.download_task_file("sdk15-job", "writer", "stdout.txt"))
    assert stdout == b"hello from writer\n"
    assert read_blob(shared_stack.connection_string, container, "sdk15/result.txt") == b"computed\n"


def test_non_zero_exit_is_a_failure_with_failure_exit_code(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    client.create_job(models.BatchJobCreateOptions(id="sdk15-fail", pool_info=models.BatchPoolInfo(pool_id="local")))
    client.create_task("sdk15-fail", models.BatchTaskCreateOptions(id="exit3", command_line="/bin/sh -c 'exit 3'"))
    task = completed(client, "sdk15-fail", "exit3")
    assert task.execution_info.result == models.BatchTaskExecutionResult.FAILURE
    assert task.execution_info.exit_code == 3
    assert task.execution_info.failure_info.code == "FailureExitCode"


def test_collection_listing_paging_and_terminate(shared_stack: LocalStack) -> None:
    # Given 5 tasks added as one collection
    client = batch_client(shared_stack)
    client.create_job(models.BatchJobCreateOptions(id="sdk15-many", pool_info=models.BatchPoolInfo(pool_id="local")))
    tasks = [models.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/true") for i in range(5)]
    result = client.create_task_collection("sdk15-many", models.BatchTaskGroup(task_values=tasks))
    assert {item.status for item in result.result_values} == {models.BatchTaskAddStatus.SUCCESS}
    # When they are listed two at a time, every one comes back once and they all complete
    listed = [task.id for task in client.list_tasks("sdk15-many", max_results=2)]
    assert sorted(listed) == [f"t{i}" for i in range(5)]
    for i in range(5):
        assert completed(client, "sdk15-many", f"t{i}").execution_info.exit_code == 0
    counts = client.list_tasks("sdk15-many", filter="state eq 'completed'", select=["id", "state"])
    assert len(list(counts)) == 5
    # And terminating the job completes it with the user's reason
    client.begin_terminate_job("sdk15-many", {"terminateReason": "done"}, polling_interval=0).result()
    job = client.get_job("sdk15-many")
    assert (job.state, job.execution_info.termination_reason) == (models.BatchJobState.COMPLETED, "done")


def test_pool_and_nodes_are_visible(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    pool = client.get_pool("local")
    nodes = list(client.list_nodes("local"))
    assert pool.task_slots_per_node == 4
    assert len(nodes) == 2
    assert {node.state for node in nodes} <= {models.BatchNodeState.IDLE, models.BatchNodeState.RUNNING}


def test_delete_job_then_it_is_gone(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    client.create_job(models.BatchJobCreateOptions(id="sdk15-gone", pool_info=models.BatchPoolInfo(pool_id="local")))
    client.begin_delete_job("sdk15-gone", polling_interval=0).result()
    with pytest.raises(Exception) as caught:
        client.get_job("sdk15-gone")
    assert getattr(caught.value, "status_code", None) == 404
