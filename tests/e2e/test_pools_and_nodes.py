"""Pools follow their targets through the local node provider; node operations move tasks as their options say."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from azure.batch import BatchClient, models
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from tests.support.batch import batch_client, until
from tests.support.stack import LocalStack

pytestmark = pytest.mark.e2e


def _pool(client: BatchClient, pool_id: str, nodes: int, slots: int = 1) -> None:
    image = models.BatchVmImageReference(publisher="batchyard", offer="local", sku="host")
    vm = models.VirtualMachineConfiguration(image_reference=image, node_agent_sku_id="batchyard.local")
    options = models.BatchPoolCreateOptions(
        id=pool_id, vm_size="standard_d2s_v3", virtual_machine_configuration=vm,
        target_dedicated_nodes=nodes, task_slots_per_node=slots,
    )  # fmt: skip
    client.create_pool(options)
    until(f"{nodes} idle nodes in {pool_id}", lambda: _states(client, pool_id) == ["idle"] * nodes)


def _states(client: BatchClient, pool_id: str) -> list[str]:
    return sorted(node.state for node in client.list_nodes(pool_id))


def _task(client: BatchClient, job_id: str, task_id: str) -> models.BatchTask:
    return client.get_task(job_id, task_id)


def _job_with_running_task(client: BatchClient, pool_id: str, job_id: str, task_id: str, command: str) -> str:
    """Add a job on the pool with one task; the node it runs on, once it runs."""
    client.create_job(models.BatchJobCreateOptions(id=job_id, pool_info=models.BatchPoolInfo(pool_id=pool_id)))
    client.create_task(job_id, models.BatchTaskCreateOptions(id=task_id, command_line=command))
    return _running_on(client, job_id, task_id)


def _running_on(client: BatchClient, job_id: str, task_id: str) -> str:
    until(f"{task_id} to run", lambda: _task(client, job_id, task_id).state == "running")
    return str(_task(client, job_id, task_id).node_info.node_id)


def test_a_pool_gets_its_target_of_local_agents_and_follows_resizes(shared_stack: LocalStack) -> None:
    # Given a pool created through the API with three dedicated nodes
    client = batch_client(shared_stack)
    _pool(client, "elastic", 3)
    assert client.get_pool("elastic").current_dedicated_nodes == 3
    # When it is resized to one node
    client.begin_resize_pool("elastic", models.BatchPoolResizeOptions(target_dedicated_nodes=1), polling_interval=0)
    # Then two nodes leave, and the pool is steady at one
    until("the pool to shrink", lambda: _states(client, "elastic") == ["idle"])
    until("the resize to settle", lambda: client.get_pool("elastic").allocation_state == "steady")
    # And deleting the pool removes it and its last node
    client.begin_delete_pool("elastic", polling_interval=0).result()
    with pytest.raises(ResourceNotFoundError):
        client.get_pool("elastic")


def test_disabling_scheduling_requeues_and_enabling_runs_the_task_again(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    _pool(client, "sched", 1)
    node_id = _job_with_running_task(client, "sched", "sched-job", "long", "/bin/sleep 2")
    # When scheduling is disabled with requeue, the task goes back to active with requeueCount 1 and the node is offline
    options = models.BatchNodeDisableSchedulingOptions(node_disable_scheduling_option="requeue")
    client.disable_node_scheduling("sched", node_id, options)
    until("the node to be offline", lambda: client.get_node("sched", node_id).state == "offline")
    until("the node to confirm the stop", lambda: _task(client, "sched-job", "long").state == "active")
    task = _task(client, "sched-job", "long")
    assert (task.state, task.execution_info.requeue_count, task.execution_info.retry_count) == ("active", 1, 0)
    with pytest.raises(HttpResponseError) as again:
        client.disable_node_scheduling("sched", node_id, options)
    assert again.value.error.code == "NodeAlreadyInTargetSchedulingState"
    # Then enabling it lets the task run and complete
    client.enable_node_scheduling("sched", node_id)
    until("the task to complete", lambda: _task(client, "sched-job", "long").state == "completed")
    assert _task(client, "sched-job", "long").execution_info.exit_code == 0


def test_reboot_restarts_the_agent_and_requeues_its_task(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    _pool(client, "rebooting", 1)
    node_id = _job_with_running_task(client, "rebooting", "reboot-job", "t", "/bin/sleep 3")
    booted = client.get_node("rebooting", node_id).last_boot_time
    reboot = {"nodeRebootOption": "requeue"}  # the SDK does not export its options model
    client.begin_reboot_node("rebooting", node_id, reboot, polling_interval=0)
    until("the node to come back", lambda: client.get_node("rebooting", node_id).last_boot_time != booted)
    until("the task to complete", lambda: _task(client, "reboot-job", "t").state == "completed")
    task = _task(client, "reboot-job", "t")
    assert (task.execution_info.exit_code, task.execution_info.requeue_count) == (0, 1)


def test_removing_a_node_with_terminate_fails_its_task(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    _pool(client, "removal", 1)
    node_id = _job_with_running_task(client, "removal", "removal-job", "t", "/bin/sleep 60")
    remove = models.BatchNodeRemoveOptions(node_ids=[node_id], node_deallocation_option="terminate")
    client.begin_remove_nodes("removal", remove, polling_interval=0)
    until("the node to be removed", lambda: _states(client, "removal") == [])
    task = _task(client, "removal-job", "t")
    assert (task.state, task.execution_info.failure_info.code) == ("completed", "TaskEnded")


def test_job_wall_clock_terminates_the_job(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    constraints = models.BatchJobConstraints(max_wall_clock_time="PT2S")
    job = models.BatchJobCreateOptions(
        id="walled", pool_info=models.BatchPoolInfo(pool_id="local"), constraints=constraints
    )
    client.create_job(job)
    client.create_task("walled", models.BatchTaskCreateOptions(id="t", command_line="/bin/sleep 60"))
    until("the job to end", lambda: client.get_job("walled").state == "completed")
    assert client.get_job("walled").execution_info.termination_reason == "MaxWallClockTimeExpiry"
    assert _task(client, "walled", "t").state == "completed"


def test_terminate_and_reactivate_a_task(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    client.create_job(models.BatchJobCreateOptions(id="lifecycle", pool_info=models.BatchPoolInfo(pool_id="local")))
    client.create_task("lifecycle", models.BatchTaskCreateOptions(id="sleeper", command_line="/bin/sleep 60"))
    _running_on(client, "lifecycle", "sleeper")
    client.terminate_task("lifecycle", "sleeper")
    until("the sleeper to complete", lambda: _task(client, "lifecycle", "sleeper").state == "completed")
    assert _task(client, "lifecycle", "sleeper").execution_info.failure_info.code == "TaskEnded"
    # A failed task comes back with retryCount 0 and runs again
    client.create_task("lifecycle", models.BatchTaskCreateOptions(id="fails", command_line="/bin/sh -c 'exit 4'"))
    until("the failure", lambda: _task(client, "lifecycle", "fails").state == "completed")
    first_end = _task(client, "lifecycle", "fails").execution_info.end_time
    client.reactivate_task("lifecycle", "fails")
    until(
        "the second run",
        lambda: (
            (t := _task(client, "lifecycle", "fails")).state == "completed" and t.execution_info.end_time != first_end
        ),
    )
    assert _task(client, "lifecycle", "fails").execution_info.exit_code == 4
    with pytest.raises(HttpResponseError) as running:
        client.reactivate_task("lifecycle", "sleeper-never")
    assert running.value.status_code == 404


def test_new_constraints_on_a_running_task_raise_its_retry_limit_and_show_in_its_spec(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    client.create_job(models.BatchJobCreateOptions(id="retuned", pool_info=models.BatchPoolInfo(pool_id="local")))
    # Given a running task that would not be retried
    limits = models.BatchTaskConstraints(max_task_retry_count=0, retention_time="PT1H")
    command = "/bin/sh -c 'sleep 2; exit 3'"
    client.create_task("retuned", models.BatchTaskCreateOptions(id="flaky", command_line=command, constraints=limits))
    _running_on(client, "retuned", "flaky")
    # When its constraints are replaced (the retention time omitted) while it runs
    raised = models.BatchTaskConstraints(max_task_retry_count=2, max_wall_clock_time="PT10M")
    client.replace_task("retuned", "flaky", models.BatchTask(constraints=raised))
    constraints = _task(client, "retuned", "flaky").constraints
    assert (constraints.max_task_retry_count, constraints.max_wall_clock_time) == (2, timedelta(minutes=10))
    assert constraints.retention_time == timedelta(days=7)
    # Then its failure is retried up to the new limit
    until("the last retry to end", lambda: _task(client, "retuned", "flaky").state == "completed", timeout=60)
    info = _task(client, "retuned", "flaky").execution_info
    assert (info.retry_count, info.exit_code) == (2, 3)
    # And a completed task's constraints no longer change; an unknown task is not found
    with pytest.raises(HttpResponseError) as completed_task:
        client.replace_task("retuned", "flaky", models.BatchTask(constraints=raised))
    assert (completed_task.value.status_code, completed_task.value.error.code) == (409, "TaskCompleted")
    with pytest.raises(ResourceNotFoundError) as unknown:
        client.replace_task("retuned", "nobody", models.BatchTask(constraints=raised))
    assert unknown.value.error.code == "TaskNotFound"


def test_max_parallel_tasks_never_runs_two_at_once(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    job = models.BatchJobCreateOptions(
        id="serial", pool_info=models.BatchPoolInfo(pool_id="local"), max_parallel_tasks=1
    )
    client.create_job(job)
    tasks = [models.BatchTaskCreateOptions(id=f"s{i}", command_line="/bin/sleep 0.3") for i in range(4)]
    client.create_task_collection("serial", models.BatchTaskGroup(task_values=tasks))
    until("all to complete", lambda: all(t.state == "completed" for t in client.list_tasks("serial")))
    spans = sorted((t.execution_info.start_time, t.execution_info.end_time) for t in client.list_tasks("serial"))
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))


def test_a_high_priority_job_overtakes_queued_work(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    _pool(client, "narrow", 1)
    low = models.BatchJobCreateOptions(id="low", pool_info=models.BatchPoolInfo(pool_id="narrow"), priority=-10)
    client.create_job(low)
    client.create_task_collection(
        "low",
        models.BatchTaskGroup(
            task_values=[models.BatchTaskCreateOptions(id=f"l{i}", command_line="/bin/sleep 1") for i in range(3)]
        ),
    )
    _running_on(client, "low", "l0")
    high = models.BatchJobCreateOptions(id="high", pool_info=models.BatchPoolInfo(pool_id="narrow"), priority=100)
    client.create_job(high)
    client.create_task("high", models.BatchTaskCreateOptions(id="h", command_line="/bin/true"))
    until("every task to complete", lambda: _task(client, "low", "l2").state == "completed")
    high_started = _task(client, "high", "h").execution_info.start_time
    assert high_started < _task(client, "low", "l1").execution_info.start_time


def _start_output(client: BatchClient, pool_id: str, node_id: str) -> bytes:
    return b"".join(client.download_node_file(pool_id, node_id, "startup/stdout.txt"))


def _echo(word: str) -> models.BatchStartTask:
    return models.BatchStartTask(command_line=f"/bin/echo {word}", wait_for_success=True)


def test_a_patched_start_task_reaches_a_node_when_it_restarts(shared_stack: LocalStack) -> None:
    # Given a pool of one node that ran the start task it was created with
    client = batch_client(shared_stack)
    image = models.BatchVmImageReference(publisher="batchyard", offer="local", sku="host")
    vm = models.VirtualMachineConfiguration(image_reference=image, node_agent_sku_id="batchyard.local")
    client.create_pool(
        models.BatchPoolCreateOptions(
            id="patched", vm_size="standard_d2s_v3", virtual_machine_configuration=vm,
            target_dedicated_nodes=1, start_task=_echo("first"),
        )
    )  # fmt: skip
    until("the node to be idle", lambda: _states(client, "patched") == ["idle"])
    node_id = next(iter(client.list_nodes("patched"))).id
    assert _start_output(client, "patched", node_id) == b"first\n"
    # When the pool's start task and metadata are patched
    metadata = [models.BatchMetadataItem(name="stage", value="two")]
    client.update_pool("patched", models.BatchPoolUpdateOptions(start_task=_echo("second"), metadata=metadata))
    # Then the pool shows them, and the node keeps what it ran until it restarts
    pool = client.get_pool("patched")
    assert (pool.start_task.command_line, pool.metadata[0].value) == ("/bin/echo second", "two")
    started = client.get_node("patched", node_id).start_task_info.start_time
    time.sleep(5.0)  # two heartbeats of the agent (every 2 s)
    assert client.get_node("patched", node_id).start_task_info.start_time == started
    assert _start_output(client, "patched", node_id) == b"first\n"
    booted = client.get_node("patched", node_id).last_boot_time
    client.begin_reboot_node("patched", node_id, {"nodeRebootOption": "requeue"}, polling_interval=0)
    until("the node to come back", lambda: client.get_node("patched", node_id).last_boot_time != booted)
    until("the node to be idle again", lambda: client.get_node("patched", node_id).state == "idle")
    assert _start_output(client, "patched", node_id) == b"second\n"
    # And replacing the properties without a start task removes it and replaces the metadata whole
    replace = models.BatchPoolReplaceOptions(application_package_references=[], metadata=[])
    client.replace_pool_properties("patched", replace)
    pool = client.get_pool("patched")
    assert (pool.start_task, pool.metadata) == (None, None)
    # And a property a pool takes only while it is empty is refused while it has a node
    with pytest.raises(HttpResponseError) as refused:
        client.update_pool("patched", models.BatchPoolUpdateOptions(vm_size="standard_d4s_v3"))
    assert (refused.value.status_code, refused.value.error.code) == (409, "OperationNotValidOnPool")
    assert client.get_pool("patched").vm_size == "standard_d2s_v3"
    # And taken once the pool has shrunk to no nodes
    client.begin_resize_pool("patched", models.BatchPoolResizeOptions(target_dedicated_nodes=0), polling_interval=0)
    until("the pool to be empty", lambda: not _states(client, "patched"))
    until("the resize to settle", lambda: client.get_pool("patched").allocation_state == "steady")
    client.update_pool("patched", models.BatchPoolUpdateOptions(vm_size="standard_d4s_v3"))
    assert client.get_pool("patched").vm_size == "standard_d4s_v3"
    client.begin_delete_pool("patched", polling_interval=0)


def test_node_counts_follow_node_states(shared_stack: LocalStack) -> None:
    # Given a pool of two nodes, one running a task and the other with scheduling disabled
    client = batch_client(shared_stack)
    _pool(client, "counted", 2)
    busy = _job_with_running_task(client, "counted", "count-job", "busy", "/bin/sleep 30")
    idle = next(node.id for node in client.list_nodes("counted") if node.id != busy)
    client.disable_node_scheduling(
        "counted", idle, models.BatchNodeDisableSchedulingOptions(node_disable_scheduling_option="taskcompletion")
    )
    # When the account's node counts are listed for that pool
    counts = list(client.list_pool_node_counts(filter="poolId eq 'counted'"))
    # Then they show one running and one offline dedicated node, and no low-priority ones
    assert [item.pool_id for item in counts] == ["counted"]
    dedicated = counts[0].dedicated
    assert (dedicated.running, dedicated.offline, dedicated.idle, dedicated.total) == (1, 1, 0, 2)
    assert counts[0].low_priority.total == 0
    assert "counted" in {item.pool_id for item in client.list_pool_node_counts()}
    client.terminate_task("count-job", "busy")
    client.begin_delete_pool("counted", polling_interval=0)


def test_supported_images_list_the_image_of_the_local_pool(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    images = list(client.list_supported_images(filter="osType eq 'linux'"))
    pool = client.get_pool("local").virtual_machine_configuration
    assert [image.node_agent_sku_id for image in images] == [pool.node_agent_sku_id]
    assert images[0].image_reference.offer == pool.image_reference.offer
    assert images[0].verification_type == "verified"
    assert list(client.list_supported_images(filter="osType eq 'windows'")) == []
