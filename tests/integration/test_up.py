"""`batchyard up` end to end: the real processes, the env file, ports, restarts and a clean stop."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from batchyard import envfile
from batchyard.services import Layout
from batchyard.up import remove_accounts
from tests.support.servers import free_port, wait_for
from tests.support.stack import LocalStack, processes_mentioning, up_argv

pytestmark = pytest.mark.e2e


def test_env_file_defines_exactly_the_four_names(shared_stack: LocalStack) -> None:
    # Given a running stack / Then its env file exports exactly the four documented variables
    assert list(shared_stack.env) == list(envfile.ENV_NAMES)


def test_env_file_key_is_valid_base64(shared_stack: LocalStack) -> None:
    # Given a running stack / Then the exported account key is base64 of 64 bytes
    assert len(base64.b64decode(shared_stack.account_key, validate=True)) == 64


def test_env_file_points_at_the_stack(shared_stack: LocalStack) -> None:
    # Given a running stack / Then the env file names its controller and Azurite ports
    assert shared_stack.url == f"http://127.0.0.1:{shared_stack.port}"
    assert f"BlobEndpoint=http://127.0.0.1:{shared_stack.blob_port}/devstoreaccount1;" in shared_stack.connection_string


def test_pool_local_exists(shared_stack: LocalStack) -> None:
    # Given a running stack / When pool `local` is fetched with the env file's credentials / Then it exists
    with shared_stack.client() as client:
        response = client.get("/pools/local")
    assert response.status_code == 200, response.text
    assert response.json()["taskSlotsPerNode"] == 4


def test_both_agents_join_the_pool(shared_stack: LocalStack) -> None:
    # Given a running stack / Then the pool's node list shows local-1 and local-2
    def node_ids() -> set[str]:
        with shared_stack.client() as client:
            response = client.get("/pools/local/nodes")
        return {node["id"] for node in response.json().get("value", [])} if response.status_code == 200 else set()

    wait_for(lambda: node_ids() == {"local-1", "local-2"}, 60.0, "nodes local-1 and local-2 in pool local")


def test_second_up_on_the_same_port_fails_with_one_line(shared_stack: LocalStack, tmp_path: Path) -> None:
    # Given a running stack / When another `up` asks for its controller port
    argv = up_argv(tmp_path / "other", shared_stack.port, free_port(), free_port(), 1, 1)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    # Then it exits 2 with one line naming the port and no traceback
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert str(shared_stack.port) in result.stderr and "Traceback" not in result.stderr


def test_sigterm_stops_everything(stack: LocalStack) -> None:
    # Given a running stack with its children
    children = psutil.Process(stack.pid).children(recursive=True)
    assert len(children) >= 5
    # When `up` gets SIGTERM (stop() sends it and fails the test if any process is left)
    code = stack.stop()
    # Then it exits 0
    assert code == 0
    assert not [child for child in children if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]


def test_children_die_when_up_is_killed(tmp_path: Path) -> None:
    # Given a running stack
    stack = LocalStack(tmp_path / "data")
    stack.start()
    children = psutil.Process(stack.pid).children(recursive=True)
    # When `up` itself is killed with SIGKILL
    up, stack.child = stack.child, None
    assert up is not None
    os.kill(up.pid, signal.SIGKILL)
    up.process.wait(timeout=10)
    # Then every child goes away on its own
    try:
        wait_for(lambda: not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE], 60.0,
                 "the children of a killed batchyard up to exit")  # fmt: skip
    finally:
        for process in processes_mentioning(str(stack.data_dir)):
            process.kill()
        stack.remove_shared_node_roots()
        remove_accounts(Layout(stack.data_dir).user_prefix)


def test_restart_keeps_jobs_and_credentials(tmp_path: Path) -> None:
    # Given a stack in which a job was created
    first = LocalStack(tmp_path / "data")
    first.start()
    try:
        with first.client() as client:
            created = client.post("/jobs", {"id": "kept-job", "poolInfo": {"poolId": "local"}})
        assert created.status_code == 201, created.text
    finally:
        assert first.stop() == 0
    # When `up` runs again on the same data directory (on other ports)
    second = LocalStack(tmp_path / "data")
    second.start()
    try:
        with second.client() as client:
            fetched = client.get("/jobs/kept-job")
        # Then the job and the account key are still there
        assert fetched.status_code == 200, fetched.text
        assert fetched.json()["id"] == "kept-job"
        assert second.account_key == first.account_key
    finally:
        assert second.stop() == 0


def test_up_runs_from_the_console_script(tmp_path: Path) -> None:
    # Given the installed console script next to this interpreter
    script = Path(sys.executable).with_name("batchyard")
    if not script.exists():
        pytest.fail(f"{script} is missing; run scripts/install.sh")
    # When it is asked for help / Then it describes `up`
    result = subprocess.run([str(script), "up", "--help"], capture_output=True, text=True, timeout=60, check=True)
    assert "--data-dir" in result.stdout
