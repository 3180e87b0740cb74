"""Runs inside a venv with azure-batch 14.x: drive the stack and print what a user would check, as JSON.

Usage: python sdk14_client.py URL ACCOUNT KEY CONTAINER_URL
"""

from __future__ import annotations

import json
import sys
import time

from azure.batch import BatchServiceClient
from azure.batch import models as m
from azure.batch.batch_auth import SharedKeyCredentials


def main(url: str, account: str, key: str, container_url: str) -> None:
    client = BatchServiceClient(SharedKeyCredentials(account, key), batch_url=url)
    client.job.add(m.JobAddParameter(id="sdk14-job", pool_info=m.PoolInformation(pool_id="local")))
    output = m.OutputFile(
        file_pattern="result.txt",
        destination=m.OutputFileDestination(
            container=m.OutputFileBlobContainerDestination(container_url=container_url, path="sdk14/result.txt")
        ),
        upload_options=m.OutputFileUploadOptions(upload_condition=m.OutputFileUploadCondition.task_completion),
    )
    command = "/bin/sh -c 'echo hello from sdk14; echo fourteen > result.txt'"
    client.task.add("sdk14-job", m.TaskAddParameter(id="writer", command_line=command, output_files=[output]))
    deadline = time.monotonic() + 90
    task = client.task.get("sdk14-job", "writer")
    while task.state != m.TaskState.completed and time.monotonic() < deadline:
        time.sleep(0.2)
        task = client.task.get("sdk14-job", "writer")
    stdout = b"".join(client.file.get_from_task("sdk14-job", "writer", "stdout.txt"))
    collection = client.task.add_collection(
        "sdk14-job", [m.TaskAddParameter(id=f"c{i}", command_line="/bin/true") for i in range(3)]
    )
    try:
        client.job.add(m.JobAddParameter(id="SDK14-JOB", pool_info=m.PoolInformation(pool_id="local")))
        duplicate = "accepted"
    except m.BatchErrorException as error:
        duplicate = error.error.code
    client.task.add("sdk14-job", m.TaskAddParameter(id="tuned", command_line="/bin/sleep 30"))
    client.task.update("sdk14-job", "tuned", constraints=m.TaskConstraints(max_task_retry_count=4))
    try:
        client.task.update("sdk14-job", "writer", constraints=m.TaskConstraints(max_task_retry_count=4))
        completed_update = "accepted"
    except m.BatchErrorException as error:
        completed_update = error.error.code
    client.job.update("sdk14-job", m.JobUpdateParameter(pool_info=m.PoolInformation(pool_id="local"), priority=7))
    client.job.terminate("sdk14-job")
    pool = _patched_pool(client)
    print(
        json.dumps(
            {
                "state": task.state.value,
                "exit_code": task.execution_info.exit_code,
                "result": task.execution_info.result.value if task.execution_info.result else None,
                "stdout": stdout.decode(),
                "collection": sorted(item.status.value for item in collection.value),
                "listed": sorted(t.id for t in client.task.list("sdk14-job")),
                "duplicate": duplicate,
                "tuned_retries": client.task.get("sdk14-job", "tuned").constraints.max_task_retry_count,
                "completed_update": completed_update,
                "job_priority": client.job.get("sdk14-job").priority,
                "job_state": client.job.get("sdk14-job").state.value,
                "pool": pool,
                "images": [image.node_agent_sku_id for image in client.account.list_supported_images()],
                "counted": sorted(counts.pool_id for counts in client.account.list_pool_node_counts()),
            }
        )
    )


def _patched_pool(client: BatchServiceClient) -> dict[str, object]:
    """Create an empty pool, patch it, then replace its properties; what GET showed after each."""
    image = m.ImageReference(publisher="batchyard", offer="local", sku="host")
    vm = m.VirtualMachineConfiguration(image_reference=image, node_agent_sku_id="batchyard.local")
    client.pool.add(m.PoolAddParameter(id="sdk14-pool", vm_size="small", virtual_machine_configuration=vm))
    client.pool.patch("sdk14-pool", m.PoolPatchParameter(metadata=[m.MetadataItem(name="a", value="1")]))
    client.pool.patch("sdk14-pool", m.PoolPatchParameter(start_task=m.StartTask(command_line="/bin/true")))
    patched = client.pool.get("sdk14-pool")
    metadata = [m.MetadataItem(name="b", value="2")]
    replace = m.PoolUpdatePropertiesParameter(
        certificate_references=[], application_package_references=[], metadata=metadata
    )
    client.pool.update_properties("sdk14-pool", replace)
    replaced = client.pool.get("sdk14-pool")
    client.pool.delete("sdk14-pool")
    return {
        "patched": [patched.start_task.command_line, [(i.name, i.value) for i in patched.metadata]],
        "replaced": [replaced.start_task is None, [(i.name, i.value) for i in replaced.metadata]],
    }


if __name__ == "__main__":
    main(*sys.argv[1:5])
