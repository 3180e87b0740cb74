"""A pool with a start task and a named account: node states, startTaskInfo, and tasks on real OS users."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator

import pytest
from azure.batch import BatchClient, models

from batchyard import procs
from nodeagent.users import Accounts
from tests.support.batch import batch_client, until
from tests.support.stack import LocalStack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="tasks switch to their own OS users only under a root agent"),
]

ACCOUNT_UID = 45_678


def _pool(
    pool_id: str, start_task: models.BatchStartTask, accounts: list[models.UserAccount]
) -> models.BatchPoolCreateOptions:
    image = models.BatchVmImageReference(publisher="batchyard", offer="local", sku="host")
    vm = models.VirtualMachineConfiguration(image_reference=image, node_agent_sku_id="batchyard.local")
    return models.BatchPoolCreateOptions(
        id=pool_id,
        vm_size="standard_d2s_v3",
        virtual_machine_configuration=vm,
        task_slots_per_node=2,
        start_task=start_task,
        user_accounts=accounts,
    )


@pytest.fixture(scope="module")
def account_name() -> Iterator[str]:
    name = f"e2e{uuid.uuid4().hex[:8]}"
    yield name
    Accounts.detect().remove(name)


@pytest.fixture(scope="module")
def pools(shared_stack: LocalStack, account_name: str) -> Iterator[BatchClient]:
    """Pool `starters` (a succeeding start task, a named account) and pool `failers` (a failing start task)."""
    client = batch_client(shared_stack)
    admin = models.UserIdentity(auto_user=models.AutoUserSpecification(scope="pool", elevation_level="admin"))
    starting = models.BatchStartTask(
        command_line="/bin/sh -c 'echo ready > $AZ_BATCH_NODE_SHARED_DIR/start-marker; id -u'",
        user_identity=admin,
        wait_for_success=True,
    )
    linux = models.LinuxUserConfiguration(uid=ACCOUNT_UID, gid=ACCOUNT_UID)
    account = models.UserAccount(name=account_name, password="not-a-real-secret", linux_user_configuration=linux)
    client.create_pool(_pool("starters", starting, [account]))
    failing = models.BatchStartTask(command_line="/bin/sh -c 'exit 7'", max_task_retry_count=1, wait_for_success=True)
    client.create_pool(_pool("failers", failing, []))
    agents = [shared_stack.start_agent("starters", "starter-1"), shared_stack.start_agent("failers", "failer-1")]
    try:
        yield client
    finally:
        procs.stop_all(agents, 10.0)


def _node(client: BatchClient, pool_id: str) -> models.BatchNode:
    nodes = list(client.list_nodes(pool_id))
    assert len(nodes) <= 1
    return nodes[0] if nodes else None  # type: ignore[return-value]


def test_a_succeeding_start_task_makes_the_node_idle(pools: BatchClient) -> None:
    until("node starter-1 to be idle", lambda: getattr(_node(pools, "starters"), "state", None) == "idle")
    node = _node(pools, "starters")
    info = node.start_task_info
    assert (info.state, info.exit_code, info.result, info.retry_count) == ("completed", 0, "success", 0)
    assert b"".join(pools.download_node_file("starters", node.id, "shared/start-marker")) == b"ready\n"
    assert b"".join(pools.download_node_file("starters", node.id, "startup/stdout.txt")) == b"0\n"


def test_a_failing_start_task_leaves_the_node_starttaskfailed(pools: BatchClient) -> None:
    until(
        "node failer-1 to fail its start task",
        lambda: getattr(_node(pools, "failers"), "state", None) == "starttaskfailed",
    )
    info = _node(pools, "failers").start_task_info
    assert (info.state, info.exit_code, info.result, info.retry_count) == ("completed", 7, "failure", 1)


def _run(client: BatchClient, task_id: str, identity: models.UserIdentity) -> models.BatchTask:
    command = "/bin/sh -c 'id -u; id -G; stat -c %u wd 2>/dev/null || stat -c %u .'"
    client.create_task(
        "identities", models.BatchTaskCreateOptions(id=task_id, command_line=command, user_identity=identity)
    )
    until(f"task {task_id} to complete", lambda: client.get_task("identities", task_id).state == "completed")
    return client.get_task("identities", task_id)


def _output(client: BatchClient, task_id: str) -> list[str]:
    return b"".join(client.download_task_file("identities", task_id, "stdout.txt")).decode().split("\n")


def test_tasks_run_as_the_identity_their_spec_names(pools: BatchClient, account_name: str) -> None:
    until("node starter-1 to be idle", lambda: getattr(_node(pools, "starters"), "state", None) == "idle")
    pools.create_job(models.BatchJobCreateOptions(id="identities", pool_info=models.BatchPoolInfo(pool_id="starters")))
    # A named pool account runs with the uid the pool gave it and owns its working directory
    named = _run(pools, "named", models.UserIdentity(username=account_name))
    uid, groups, owner = _output(pools, "named")[:3]
    assert named.execution_info.exit_code == 0
    assert (uid, groups, owner) == (str(ACCOUNT_UID), str(ACCOUNT_UID), str(ACCOUNT_UID))
    # A task-scope non-admin auto user is neither root nor the named account, and has no supplementary groups
    auto = models.UserIdentity(auto_user=models.AutoUserSpecification(scope="task", elevation_level="nonadmin"))
    _run(pools, "auto", auto)
    uid, groups, owner = _output(pools, "auto")[:3]
    assert uid not in ("0", str(ACCOUNT_UID)) and owner == uid
    assert len(groups.split()) == 1
    # A pool admin runs as root where the node has no sudo, else as a member of the sudo group
    admin = models.UserIdentity(auto_user=models.AutoUserSpecification(scope="pool", elevation_level="admin"))
    _run(pools, "admin", admin)
    uid = _output(pools, "admin")[0]
    assert (uid == "0") == (shutil.which("sudo") is None)


def test_an_identity_the_pool_does_not_define_fails_the_task_not_the_node(pools: BatchClient) -> None:
    until("node starter-1 to be idle", lambda: getattr(_node(pools, "starters"), "state", None) == "idle")
    pools.create_job(models.BatchJobCreateOptions(id="nobody-job", pool_info=models.BatchPoolInfo(pool_id="starters")))
    pools.create_task(
        "nobody-job",
        models.BatchTaskCreateOptions(
            id="t", command_line="/bin/true", user_identity=models.UserIdentity(username="ghost")
        ),
    )
    until("the task to complete", lambda: pools.get_task("nobody-job", "t").state == "completed")
    failure = pools.get_task("nobody-job", "t").execution_info.failure_info
    assert failure.code == "UserIdentityNotFound"
    pools.create_task("nobody-job", models.BatchTaskCreateOptions(id="after", command_line="/bin/true"))
    until("the next task to complete", lambda: pools.get_task("nobody-job", "after").state == "completed")
    assert pools.get_task("nobody-job", "after").execution_info.exit_code == 0
