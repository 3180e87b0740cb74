"""The job manager task through the official SDK: created with its job, runs alone on its node, ends its job."""

from __future__ import annotations

import pytest
from azure.batch import BatchClient, models

from batchyard.services import Layout
from tests.support.batch import batch_client, completed, until
from tests.support.stack import LocalStack

pytestmark = pytest.mark.e2e

LOCAL = models.BatchPoolInfo(pool_id="local")


def _job_with_manager(client: BatchClient, job_id: str, command: str, **manager: object) -> None:
    task = models.BatchJobManagerTask(id="manager", command_line=command, **manager)  # type: ignore[arg-type]
    client.create_job(models.BatchJobCreateOptions(id=job_id, pool_info=LOCAL, job_manager_task=task))


def test_the_manager_runs_alone_on_its_node_and_ends_the_job_when_it_completes(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    _job_with_manager(client, "managed", "/bin/sleep 3")
    # The manager is a task of the job from the start
    assert client.get_task("managed", "manager").command_line == "/bin/sleep 3"
    workers = [models.BatchTaskCreateOptions(id=f"w{i}", command_line="/bin/sleep 30") for i in range(3)]
    client.create_task_collection("managed", models.BatchTaskGroup(task_values=workers))
    until("the manager to run", lambda: client.get_task("managed", "manager").state == "running")
    manager_node = client.get_task("managed", "manager").node_info.node_id
    until("the workers to run", lambda: all(client.get_task("managed", f"w{i}").state == "running" for i in range(3)))
    # No worker shares the manager's node while it runs
    assert all(client.get_task("managed", f"w{i}").node_info.node_id != manager_node for i in range(3))
    # When the manager completes, the job ends with JMComplete and the running workers are ended
    assert completed(client, "managed", "manager").execution_info.exit_code == 0
    until("the job to complete", lambda: client.get_job("managed").state == "completed")
    assert client.get_job("managed").execution_info.termination_reason == "JMComplete"
    for index in range(3):
        assert completed(client, "managed", f"w{index}").execution_info.failure_info.code == "TaskEnded"


def test_a_manager_that_does_not_kill_its_job_and_is_retried(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    # Both nodes' roots are below one directory every task user may write in
    shared = Layout(shared_stack.data_dir).nodes_dir / "manager-tries"
    shared.mkdir(mode=0o1777, exist_ok=True)
    shared.chmod(0o1777)
    marker = f"{shared}/tried"
    command = f"/bin/sh -c 'if [ -e {marker} ]; then exit 0; fi; touch {marker}; exit 1'"
    constraints = models.BatchTaskConstraints(max_task_retry_count=1)
    _job_with_manager(client, "patient", command, kill_job_on_completion=False, constraints=constraints)
    manager = completed(client, "patient", "manager")
    assert (manager.execution_info.exit_code, manager.execution_info.retry_count) == (0, 1)
    client.create_task("patient", models.BatchTaskCreateOptions(id="after", command_line="/bin/true"))
    assert completed(client, "patient", "after").execution_info.exit_code == 0
    assert client.get_job("patient").state == "active"


def test_a_shrinking_pool_keeps_the_node_of_the_job_manager(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    image = models.BatchVmImageReference(publisher="batchyard", offer="local", sku="host")
    vm = models.VirtualMachineConfiguration(image_reference=image, node_agent_sku_id="batchyard.local")
    pool = models.BatchPoolCreateOptions(
        id="shrinking", vm_size="standard_d2s_v3", virtual_machine_configuration=vm, target_dedicated_nodes=2,
        task_slots_per_node=2,
    )  # fmt: skip
    client.create_pool(pool)
    until("two idle nodes", lambda: [n.state for n in client.list_nodes("shrinking")] == ["idle", "idle"])
    requeue = models.BatchNodeDisableSchedulingOptions(node_disable_scheduling_option="requeue")
    # Given the manager alone on shrinking-2 (one slot used) and two workers on shrinking-1 (both slots used),
    # so that a shrink taking the least busy node first would take the manager's
    client.disable_node_scheduling("shrinking", "shrinking-1", requeue)
    task = models.BatchJobManagerTask(id="manager", command_line="/bin/sleep 10", run_exclusive=False)
    job = models.BatchJobCreateOptions(
        id="kept", pool_info=models.BatchPoolInfo(pool_id="shrinking"), job_manager_task=task
    )
    client.create_job(job)
    until("the manager to run", lambda: client.get_task("kept", "manager").state == "running")
    client.enable_node_scheduling("shrinking", "shrinking-1")
    keep_running = models.BatchNodeDisableSchedulingOptions(node_disable_scheduling_option="taskcompletion")
    client.disable_node_scheduling("shrinking", "shrinking-2", keep_running)
    workers = [models.BatchTaskCreateOptions(id=f"w{i}", command_line="/bin/sleep 10") for i in range(2)]
    client.create_task_collection("kept", models.BatchTaskGroup(task_values=workers))
    until("the workers to run", lambda: all(client.get_task("kept", f"w{i}").state == "running" for i in range(2)))
    client.enable_node_scheduling("shrinking", "shrinking-2")
    assert client.get_task("kept", "manager").node_info.node_id == "shrinking-2"
    # When the pool shrinks to one node, the workers' node leaves and the manager runs on undisturbed
    client.begin_resize_pool("shrinking", models.BatchPoolResizeOptions(target_dedicated_nodes=1), polling_interval=0)
    until("one node left", lambda: [n.id for n in client.list_nodes("shrinking")] == ["shrinking-2"])
    manager = completed(client, "kept", "manager")
    assert (manager.execution_info.exit_code, manager.execution_info.requeue_count) == (0, 0)
