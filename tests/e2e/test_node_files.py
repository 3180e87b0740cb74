"""Auto-storage resource files, listing and deleting task and node files, task statistics, container checks."""

from __future__ import annotations

import pytest
from azure.batch import BatchClient, models
from azure.core.exceptions import HttpResponseError

from tests.e2e.blobs import service
from tests.support.batch import batch_client, completed
from tests.support.stack import LocalStack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def finished(shared_stack: LocalStack) -> tuple[BatchClient, str, str]:
    """A completed task that read two auto-storage blobs under a prefix and wrote files into wd/out/."""
    with service(shared_stack.connection_string) as blobs:
        blobs.create_container("autoinputs")
        for name in ("data/a.txt", "data/sub/b.txt", "other/c.txt"):
            blobs.get_container_client("autoinputs").upload_blob(name, name.encode(), overwrite=True)
    client = batch_client(shared_stack)
    client.create_job(models.BatchJobCreateOptions(id="listing", pool_info=models.BatchPoolInfo(pool_id="local")))
    resource = models.ResourceFile(auto_storage_container_name="autoinputs", blob_prefix="data/", file_path="in")
    command = "/bin/sh -c 'mkdir -p out && cat in/data/a.txt > out/one.txt && cat in/data/sub/b.txt > out/two.txt'"
    client.create_task(
        "listing", models.BatchTaskCreateOptions(id="lister", command_line=command, resource_files=[resource])
    )
    task = completed(client, "listing", "lister")
    assert task.execution_info.exit_code == 0, task.as_dict()
    return client, "listing", "lister"


def test_auto_storage_container_files_keep_their_folders(finished: tuple[BatchClient, str, str]) -> None:
    client, job_id, task_id = finished
    assert b"".join(client.download_task_file(job_id, task_id, "wd/out/one.txt")) == b"data/a.txt"
    assert b"".join(client.download_task_file(job_id, task_id, "wd/out/two.txt")) == b"data/sub/b.txt"
    names = {f.name for f in client.list_task_files(job_id, task_id, recursive=True)}
    assert "wd/in/other/c.txt" not in names


def test_listing_task_files(finished: tuple[BatchClient, str, str]) -> None:
    client, job_id, task_id = finished
    top = {f.name: f for f in client.list_task_files(job_id, task_id)}
    assert {"stdout.txt", "stderr.txt", "wd"} <= set(top)
    assert top["wd"].is_directory and not top["stdout.txt"].is_directory
    deep = {f.name for f in client.list_task_files(job_id, task_id, recursive=True)}
    assert {"wd/out/one.txt", "wd/in/data/a.txt", "wd/in/data/sub/b.txt"} <= deep
    only_out = {
        f.name for f in client.list_task_files(job_id, task_id, recursive=True, filter="startswith(name,'wd/out')")
    }
    assert only_out == {"wd/out", "wd/out/one.txt", "wd/out/two.txt"}


def test_deleting_a_task_file(finished: tuple[BatchClient, str, str]) -> None:
    client, job_id, task_id = finished
    client.delete_task_file(job_id, task_id, "wd/out/two.txt")
    names = {f.name for f in client.list_task_files(job_id, task_id, recursive=True)}
    assert "wd/out/two.txt" not in names and "wd/out/one.txt" in names
    # (a HEAD: the SDK leaves the connection of a failed streamed download open)
    with pytest.raises(HttpResponseError) as caught:
        client.get_task_file_properties(job_id, task_id, "wd/out/two.txt")
    assert caught.value.status_code == 404


def test_node_files_show_the_task_directory(finished: tuple[BatchClient, str, str]) -> None:
    client, job_id, task_id = finished
    node_id = client.get_task(job_id, task_id).node_info.node_id
    roots = {f.name for f in client.list_node_files("local", node_id)}
    assert {"shared", "startup", "workitems"} <= roots
    path = f"workitems/{job_id}/job-1/{task_id}/wd/out/one.txt"
    assert b"".join(client.download_node_file("local", node_id, path)) == b"data/a.txt"
    assert client.get_node_file_properties("local", node_id, path).content_length == len(b"data/a.txt")


def test_task_statistics_with_expand(finished: tuple[BatchClient, str, str]) -> None:
    client, job_id, task_id = finished
    stats = client.get_task(job_id, task_id, expand=["stats"]).task_statistics
    assert stats is not None
    assert stats.wall_clock_time.total_seconds() > 0
    assert client.get_task(job_id, task_id).task_statistics is None


def test_duplicate_bind_mount_sources_are_a_400(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    client.create_job(models.BatchJobCreateOptions(id="containers", pool_info=models.BatchPoolInfo(pool_id="local")))
    mounts = [models.ContainerHostBatchBindMountEntry(source="Task", is_read_only=True)] * 2
    settings = models.BatchTaskContainerSettings(image_name="ubuntu", container_host_batch_bind_mounts=mounts)
    with pytest.raises(HttpResponseError) as caught:
        client.create_task(
            "containers", models.BatchTaskCreateOptions(id="c", command_line="true", container_settings=settings)
        )
    assert (caught.value.status_code, caught.value.error.code) == (400, "InvalidPropertyValue")


def test_container_task_on_a_pool_without_containers_is_a_400(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    client.create_job(models.BatchJobCreateOptions(id="containers2", pool_info=models.BatchPoolInfo(pool_id="local")))
    settings = models.BatchTaskContainerSettings(image_name="ubuntu")
    with pytest.raises(HttpResponseError) as caught:
        client.create_task(
            "containers2", models.BatchTaskCreateOptions(id="c", command_line="true", container_settings=settings)
        )
    assert (caught.value.status_code, caught.value.error.code) == (400, "InvalidPropertyValue")
