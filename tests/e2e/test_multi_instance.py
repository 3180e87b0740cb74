"""Multi-instance tasks through the official SDK, on a pool of three local agents.

The program is a TCP rendezvous: the coordination command of every instance starts a rank process in
the background, which connects to the primary's address from AZ_BATCH_MASTER_NODE; the primary's
command listens there and prints one line per rank once every rank reported.
"""

from __future__ import annotations

import socket

import pytest
from azure.batch import BatchClient, models
from azure.core.exceptions import HttpResponseError

from tests.e2e.blobs import readable_blob_url, writable_container
from tests.support.batch import batch_client, completed, until
from tests.support.stack import LocalStack

pytestmark = pytest.mark.e2e

RANK_PROGRAM = b"""\
import os, socket, sys, time
mode, port = sys.argv[1], int(sys.argv[2])
master = os.environ["AZ_BATCH_MASTER_NODE"].rsplit(":", 1)[0]
if mode == "rank":
    me = f'{os.environ["AZ_BATCH_NODE_ID"]} master={os.environ["AZ_BATCH_IS_CURRENT_NODE_MASTER"]}'
    for _ in range(600):
        try:
            with socket.create_connection((master, port), timeout=1) as peer:
                peer.sendall(me.encode())
            break
        except OSError:
            time.sleep(0.1)
else:
    expected = len(os.environ["AZ_BATCH_HOST_LIST"].split(","))
    with socket.create_server((master, port)) as server:
        server.settimeout(60)
        seen = []
        while len(seen) < expected:
            peer, _ = server.accept()
            seen.append(peer.recv(256).decode())
            peer.close()
    print("\\n".join(sorted(seen)))
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _gang_pool(client: BatchClient, pool_id: str, nodes: int) -> None:
    image = models.BatchVmImageReference(publisher="batchyard", offer="local", sku="host")
    vm = models.VirtualMachineConfiguration(image_reference=image, node_agent_sku_id="batchyard.local")
    options = models.BatchPoolCreateOptions(
        id=pool_id, vm_size="standard_d2s_v3", virtual_machine_configuration=vm, target_dedicated_nodes=nodes,
        enable_inter_node_communication=True,
    )  # fmt: skip
    client.create_pool(options)
    until(f"{nodes} idle nodes", lambda: [n.state for n in client.list_nodes(pool_id)] == ["idle"] * nodes, 120)


@pytest.fixture(scope="module")
def gang_client(shared_stack: LocalStack) -> BatchClient:
    client = batch_client(shared_stack)
    _gang_pool(client, "gang", 3)
    client.create_job(models.BatchJobCreateOptions(id="mpi", pool_info=models.BatchPoolInfo(pool_id="gang")))
    return client


def test_every_rank_of_a_three_node_program_reports_to_the_primary(
    shared_stack: LocalStack, gang_client: BatchClient
) -> None:
    container, _ = writable_container(shared_stack.connection_string)
    program = readable_blob_url(shared_stack.connection_string, container, "rank.py", RANK_PROGRAM)
    port = _free_port()
    settings = models.MultiInstanceSettings(
        number_of_instances=3,
        coordination_command_line=f"/bin/sh -c 'python3 ../rank.py rank {port} > /dev/null 2>&1 &'",
        common_resource_files=[models.ResourceFile(http_url=program, file_path="rank.py")],
    )
    task = models.BatchTaskCreateOptions(
        id="hello", command_line=f"python3 ../rank.py serve {port}", multi_instance_settings=settings
    )
    gang_client.create_task("mpi", task)
    done = completed(gang_client, "mpi", "hello")
    assert done.execution_info.exit_code == 0, done.execution_info
    lines = b"".join(gang_client.download_task_file("mpi", "hello", "stdout.txt")).decode().split()
    ranks = dict(zip(lines[0::2], lines[1::2], strict=True))
    nodes = {node.id for node in gang_client.list_nodes("gang")}
    assert set(ranks) == nodes
    assert ranks[done.node_info.node_id] == "master=true"
    assert sorted(ranks.values()) == ["master=false", "master=false", "master=true"]
    subtasks = list(gang_client.list_subtasks("mpi", "hello"))
    assert sorted(subtask.id for subtask in subtasks) == [1, 2]
    assert {subtask.node_info.node_id for subtask in subtasks} == nodes - {done.node_info.node_id}
    assert all((s.state, s.exit_code, s.result) == ("completed", 0, "success") for s in subtasks)


def test_a_subtask_that_fails_to_coordinate_fails_the_whole_task(gang_client: BatchClient) -> None:
    settings = models.MultiInstanceSettings(
        number_of_instances=3,
        coordination_command_line="/bin/sh -c 'test \"$AZ_BATCH_IS_CURRENT_NODE_MASTER\" = true'",
    )
    task = models.BatchTaskCreateOptions(id="broken", command_line="/bin/true", multi_instance_settings=settings)
    gang_client.create_task("mpi", task)
    done = completed(gang_client, "mpi", "broken")
    assert (done.execution_info.result, done.execution_info.failure_info.code) == ("failure", "SubtaskFailed")
    until("the gang's nodes to be free", lambda: all(n.state == "idle" for n in gang_client.list_nodes("gang")))


def test_a_multi_instance_task_needs_one_slot(gang_client: BatchClient) -> None:
    settings = models.MultiInstanceSettings(number_of_instances=2, coordination_command_line="/bin/true")
    task = models.BatchTaskCreateOptions(
        id="wide", command_line="/bin/true", multi_instance_settings=settings, required_slots=2
    )
    with pytest.raises(HttpResponseError) as refused:
        gang_client.create_task("mpi", task)
    assert (refused.value.status_code, refused.value.error.code) == (400, "InvalidPropertyValue")
