"""Resource files in, files readable while the task runs, and terminate stopping the process on its node."""

from __future__ import annotations

import uuid

import psutil
import pytest
from azure.batch import BatchClient, models

from tests.e2e.blobs import readable_blob_url, writable_container
from tests.support.batch import batch_client, until
from tests.support.stack import LocalStack

pytestmark = pytest.mark.e2e


def _read(client: BatchClient, job_id: str, task_id: str, path: str) -> bytes:
    return b"".join(client.download_task_file(job_id, task_id, path))


def test_http_resource_file_is_downloaded_into_the_working_directory(shared_stack: LocalStack) -> None:
    # Given a blob in Azurite, referenced by a SAS URL
    container, _ = writable_container(shared_stack.connection_string)
    url = readable_blob_url(shared_stack.connection_string, container, "inputs/data.txt", b"resource payload\n")
    client = batch_client(shared_stack)
    client.create_job(models.BatchJobCreateOptions(id="files-in", pool_info=models.BatchPoolInfo(pool_id="local")))
    resource = models.ResourceFile(http_url=url, file_path="in/data.txt")
    command = "/bin/sh -c 'cat in/data.txt; echo $AZ_BATCH_JOB_ID $AZ_BATCH_NODE_ID'"
    # When a task that reads it runs
    client.create_task(
        "files-in", models.BatchTaskCreateOptions(id="reader", command_line=command, resource_files=[resource])
    )
    until("the reader to complete", lambda: client.get_task("files-in", "reader").state == "completed")
    # Then it saw the file, and the node environment names the job and a node of the pool
    lines = _read(client, "files-in", "reader", "stdout.txt").decode().splitlines()
    node_ids = {node.id for node in client.list_nodes("local")}
    assert lines[0] == "resource payload"
    job_id, node_id = lines[1].split()
    assert job_id == "files-in" and node_id in node_ids
    assert _read(client, "files-in", "reader", "wd/in/data.txt") == b"resource payload\n"


def test_files_are_readable_while_running_and_terminate_kills_the_process(shared_stack: LocalStack) -> None:
    # Given a long task that writes to stdout and to its working directory
    client = batch_client(shared_stack)
    marker = f"{uuid.uuid4().int % 1000}.{uuid.uuid4().int % 1000}"
    command = f"/bin/sh -c 'echo started; echo partial > progress.txt; sleep {marker}'"
    client.create_job(models.BatchJobCreateOptions(id="files-live", pool_info=models.BatchPoolInfo(pool_id="local")))
    client.create_task("files-live", models.BatchTaskCreateOptions(id="sleeper", command_line=command))
    until("the sleeper to run", lambda: client.get_task("files-live", "sleeper").state == "running")
    # When its files are read while it runs
    until("stdout to be written", lambda: _read(client, "files-live", "sleeper", "stdout.txt") == b"started\n")
    assert _read(client, "files-live", "sleeper", "wd/progress.txt") == b"partial\n"
    properties = client.get_task_file_properties("files-live", "sleeper", "stdout.txt")
    assert properties.content_length == len(b"started\n")
    assert b"".join(client.download_task_file("files-live", "sleeper", "stdout.txt", ocp_range="bytes=2-4")) == b"art"
    assert _sleeping(marker)
    # And the job is terminated
    client.begin_terminate_job("files-live", {"terminateReason": "stop"}, polling_interval=0).result()
    # Then the task failed with TaskEnded and its process is gone from the node
    task = client.get_task("files-live", "sleeper")
    assert (task.state, task.execution_info.failure_info.code) == (models.BatchTaskState.COMPLETED, "TaskEnded")
    until("the sleep process to be killed", lambda: not _sleeping(marker))


def _sleeping(marker: str) -> bool:
    return any(process.info["cmdline"] == ["sleep", marker] for process in psutil.process_iter(["cmdline"]))


def test_no_sas_signature_or_account_key_in_logs_or_task_records(shared_stack: LocalStack) -> None:
    # Given a task whose resource file needs a SAS and whose upload target refuses it (a read-only SAS)
    container, _ = writable_container(shared_stack.connection_string)
    url = readable_blob_url(shared_stack.connection_string, container, "in.txt", b"x")
    signature = url.split("sig=", 1)[1].split("&", 1)[0]
    container_root = url.rsplit("/", 1)[0]
    read_only = f"{container_root}?{url.split('?', 1)[1]}"
    output = models.OutputFile(
        file_pattern="../stdout.txt",
        destination=models.OutputFileDestination(
            container=models.OutputFileBlobContainerDestination(container_url=read_only, path="out.txt")
        ),
        upload_options=models.OutputFileUploadConfiguration(upload_condition="taskcompletion"),
    )
    client = batch_client(shared_stack)
    client.create_job(models.BatchJobCreateOptions(id="secrets", pool_info=models.BatchPoolInfo(pool_id="local")))
    task_options = models.BatchTaskCreateOptions(
        id="t",
        command_line="/bin/cat in.txt",
        resource_files=[models.ResourceFile(http_url=url, file_path="in.txt")],
        output_files=[output],
    )
    client.create_task("secrets", task_options)
    until("the task to complete", lambda: client.get_task("secrets", "t").state == "completed")
    # Then the upload failure is reported, and neither the task record nor any log shows a secret
    task = client.get_task("secrets", "t")
    assert task.execution_info.failure_info.code.startswith("FileUpload")
    record = str(task.as_dict())
    logs = "".join(path.read_text(errors="replace") for path in (shared_stack.data_dir / "logs").glob("*.log"))
    for text in (record, logs):
        assert signature not in text
        assert shared_stack.account_key not in text
