"""Auto pools under `batchyard up`: the "Add a job" request of the Azure documentation runs as it is written.

`tests/fixtures/add_job_request.json` is that request body verbatim (an API version from before
2018, with `blobSource`, `maxTasksPerNode` and a Windows cloud service configuration); only its
commands become Linux ones and its blob URLs point at the stack's Azurite.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from batchyard.client import BatchClient
from tests.e2e.blobs import readable_blob_url, writable_container
from tests.support.batch import until
from tests.support.stack import LocalStack

pytestmark = pytest.mark.e2e

REQUEST = Path(__file__).parent.parent / "fixtures" / "add_job_request.json"


def _documented_job(stack: LocalStack) -> dict[str, Any]:
    """The documented body, with Linux commands and blobs in Azurite."""
    body: dict[str, Any] = json.loads(REQUEST.read_text())
    container, _ = writable_container(stack.connection_string)
    files = {
        "myprogram.exe": b'echo "manager saw $myvariable"\n',
        "test.txt": b"hello from a resource file\n",
        "myprogram2.exe": b'test "$myvariable" = myvalue\n',
    }
    urls = {name: readable_blob_url(stack.connection_string, container, name, data) for name, data in files.items()}
    manager = body["jobManagerTask"]
    manager["commandLine"] = "/bin/sh -c 'sh myprogram.exe && cat test.txt'"
    start = body["poolInfo"]["autoPoolSpecification"]["pool"]["startTask"]
    start["commandLine"] = "/bin/sh -c 'sh myprogram2.exe'"
    for resource in [*manager["resourceFiles"], *start["resourceFiles"]]:
        resource["blobSource"] = urls[resource["filePath"]]
    return body


def _get(client: BatchClient, path: str) -> dict[str, Any]:
    response = client.get(path)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def test_the_documented_add_job_request_runs_on_its_auto_pool(shared_stack: LocalStack) -> None:
    with shared_stack.client() as client:
        response = client.post("/jobs", _documented_job(shared_stack))
        assert response.status_code == 201, response.text
        job = _get(client, "/jobs/myjob1")
        pool_id = job["executionInfo"]["poolId"]
        assert pool_id.startswith("mypool_")
        assert job["poolInfo"]["autoPoolSpecification"]["poolLifetimeOption"] == "job"
        # The auto pool gets its three nodes, each through the start task
        pool = _get(client, f"/pools/{pool_id}")
        assert (pool["targetDedicatedNodes"], pool["taskSlotsPerNode"]) == (3, 2)

        def idle_nodes() -> int:
            nodes = _get(client, f"/pools/{pool_id}/nodes")["value"]
            return sum(node["state"] == "idle" and node["startTaskInfo"]["result"] == "success" for node in nodes)

        until("three nodes with a successful start task", lambda: idle_nodes() == 3, timeout=180)
        # The job manager runs to completion with its resource files and environment
        until(
            "the job manager to complete",
            lambda: _get(client, "/jobs/myjob1/tasks/mytask1")["state"] == "completed",
            timeout=120,
        )
        manager = _get(client, "/jobs/myjob1/tasks/mytask1")
        assert manager["executionInfo"]["exitCode"] == 0, manager
        out = client.get("/jobs/myjob1/tasks/mytask1/files/stdout.txt").text
        assert out.splitlines() == ["manager saw myvalue", "hello from a resource file"]
        # The job read back and sent whole (its auto pool specification included) keeps its pool
        replaced = client.request("PUT", "/jobs/myjob1", {**_get(client, "/jobs/myjob1"), "priority": 5})
        assert replaced.status_code == 200, replaced.text
        assert (_get(client, "/jobs/myjob1")["priority"], _get(client, "/jobs/myjob1")["executionInfo"]["poolId"]) == (
            5,
            pool_id,
        )
        # killJobOnCompletion is false: the job stays until it is terminated, then its pool goes with it
        assert _get(client, "/jobs/myjob1")["state"] == "active"
        assert client.post("/jobs/myjob1/terminate").status_code == 202
        until("the auto pool to be deleted", lambda: client.get(f"/pools/{pool_id}").status_code == 404, timeout=120)


def test_an_auto_pool_that_cannot_be_created_completes_the_job_with_a_scheduling_error(
    shared_stack: LocalStack,
) -> None:
    spec = {"poolLifetimeOption": "job", "pool": {"targetDedicatedNodes": 1}}
    with shared_stack.client() as client:
        response = client.post("/jobs", {"id": "poolless", "poolInfo": {"autoPoolSpecification": spec}})
        assert response.status_code == 201, response.text
        job = _get(client, "/jobs/poolless")
        assert job["state"] == "completed"
        error = job["executionInfo"]["schedulingError"]
        assert (error["category"], error["code"]) == ("usererror", "InvalidAutoPoolSettings")
        assert "vmSize" in error["message"]
        assert client.get(f"/pools/{job['executionInfo']['poolId']}").status_code == 404


def test_a_kept_alive_auto_pool_outlives_its_job_and_jobschedule_is_for_schedules(shared_stack: LocalStack) -> None:
    spec = {
        "autoPoolIdPrefix": "kept",
        "poolLifetimeOption": "job",
        "keepAlive": True,
        "pool": {"vmSize": "standard_d2s_v3", "targetDedicatedNodes": 0},
    }
    with shared_stack.client() as client:
        assert client.post("/jobs", {"id": "keeper", "poolInfo": {"autoPoolSpecification": spec}}).status_code == 201
        pool_id = _get(client, "/jobs/keeper")["executionInfo"]["poolId"]
        assert client.post("/jobs/keeper/terminate").status_code == 202
        until("the job to complete", lambda: _get(client, "/jobs/keeper")["state"] == "completed")
        # Several reconciler passes later the pool is still there and active
        time.sleep(3)
        assert _get(client, f"/pools/{pool_id}")["state"] == "active"
        scheduled = {**spec, "poolLifetimeOption": "jobschedule"}
        refused = client.post("/jobs", {"id": "scheduled", "poolInfo": {"autoPoolSpecification": scheduled}})
        assert refused.status_code == 400, refused.text
