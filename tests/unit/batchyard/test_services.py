"""Each child of `batchyard up` gets the command line and settings the design gives it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from batchyard import services
from batchyard.credentials import Credentials
from batchyard.services import AgentSpec, Layout

CREDENTIALS = Credentials(account_name="batchyard", account_key="a2V5", node_secret="s3cret")


def test_node_ids_count_from_one() -> None:
    # When three agents are named / Then they are local-1 .. local-3
    assert services.node_ids(3) == ["local-1", "local-2", "local-3"]


def test_redis_runs_on_loopback_with_aof_and_no_snapshots(tmp_path: Path) -> None:
    # When redis-server's argv is built / Then it binds loopback, turns AOF on and RDB off, in the data dir
    argv = services.redis_argv("redis-server", 6400, Layout(tmp_path))
    assert argv == ["redis-server", "--bind", "127.0.0.1", "--port", "6400", "--appendonly", "yes", "--save", "",
                    "--dir", str(tmp_path / "redis")]  # fmt: skip


def test_azurite_runs_without_telemetry(tmp_path: Path) -> None:
    # When azurite's argv is built / Then it has the documented flags
    argv = services.azurite_argv("azurite-blob", 10000, Layout(tmp_path))
    assert argv[1:] == ["--blobHost", "127.0.0.1", "--blobPort", "10000", "--location", str(tmp_path / "azurite"),
                        "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"]  # fmt: skip


def test_controller_settings() -> None:
    # When the controller's environment is built / Then its CONTROLLER_* settings point at the stack
    env = services.controller_env(8080, 6400, 10000, CREDENTIALS)
    ours = {name: value for name, value in env.items() if name.startswith("CONTROLLER_")}
    assert ours["CONTROLLER_HOST"] == "127.0.0.1"
    assert ours["CONTROLLER_PORT"] == "8080"
    assert ours["CONTROLLER_PUBLIC_URL"] == "http://127.0.0.1:8080"
    assert ours["CONTROLLER_REDIS_URL"] == "redis://127.0.0.1:6400/0"
    assert (ours["CONTROLLER_ACCOUNT_NAME"], ours["CONTROLLER_ACCOUNT_KEY"]) == ("batchyard", "a2V5")
    assert ours["CONTROLLER_NODE_SECRET"] == "s3cret"
    assert "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;" in ours["CONTROLLER_AUTO_STORAGE_CONNECTION_STRING"]


def test_agent_settings(tmp_path: Path) -> None:
    # When an agent's environment is built / Then its NODEAGENT_* settings name its node, pool, slots and root
    agent = AgentSpec(node_id="local-2", slots=4, file_server_port=7001)
    env = services.agent_env(agent, Layout(tmp_path), 8080, 6400, "s3cret")
    assert env["NODEAGENT_NODE_ID"] == "local-2"
    assert env["NODEAGENT_POOL_ID"] == "local"
    assert env["NODEAGENT_ROOT_DIR"] == str(Layout(tmp_path).nodes_dir / "local-2")
    assert env["NODEAGENT_USER_PREFIX"] == Layout(tmp_path).user_prefix
    assert env["NODEAGENT_TASK_SLOTS"] == "4"
    assert env["NODEAGENT_BROKER_URL"] == "redis://127.0.0.1:6400/0"
    assert env["NODEAGENT_CONTROLLER_URL"] == "http://127.0.0.1:8080"
    assert env["NODEAGENT_NODE_SECRET"] == "s3cret"
    assert (env["NODEAGENT_FILE_SERVER_HOST"], env["NODEAGENT_FILE_SERVER_PORT"]) == ("127.0.0.1", "7001")


def test_controller_and_agents_share_the_broker_key_prefix(tmp_path: Path) -> None:
    # When both environments are built / Then they use the same broker key prefix
    controller = services.controller_env(8080, 6400, 10000, CREDENTIALS)
    agent = services.agent_env(AgentSpec("local-1", 4, 7001), Layout(tmp_path), 8080, 6400, "s3cret")
    assert controller["CONTROLLER_BROKER_KEY_PREFIX"] == agent["NODEAGENT_BROKER_KEY_PREFIX"]


def test_pool_body() -> None:
    # When the pool body is built for 2 agents x 4 slots / Then it asks for that pool
    body = services.pool_body(2, 4)
    assert (body["id"], body["taskSlotsPerNode"], body["targetDedicatedNodes"]) == ("local", 4, 2)
    assert body["virtualMachineConfiguration"] == {
        "imageReference": {"publisher": "batchyard", "offer": "local", "sku": "host", "version": "latest"},
        "nodeAgentSKUId": "batchyard.local",
    }


def test_node_roots_stay_in_a_data_dir_other_users_can_reach() -> None:
    # Given a data directory every user can traverse (/tmp is world-searchable)
    reachable = Path(tempfile.mkdtemp(prefix="batchyard-open-", dir="/tmp"))
    try:
        reachable.chmod(0o755)
        assert Layout(reachable).nodes_dir == reachable / "nodes"
    finally:
        reachable.rmdir()


def test_a_private_data_dir_of_a_root_stack_keeps_node_roots_under_the_shared_base(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only a root stack switches task users")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    nodes = Layout(private).nodes_dir
    assert nodes.parent == services.SHARED_NODES_BASE
    assert nodes != Layout(tmp_path / "other").nodes_dir
