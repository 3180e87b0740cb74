"""The legacy azure-batch 14.x SDK (msrest) drives the stack end to end, from its own virtual environment."""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import pytest

from tests.e2e.blobs import read_blob, writable_container
from tests.support.stack import LocalStack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".cache" / "venv-sdk14"
CLIENT = Path(__file__).with_name("sdk14_client.py")


@pytest.fixture(scope="session")
def sdk14_python() -> Path:
    """A Python with azure-batch 14.x, created once and cached under .cache/."""
    python = VENV / "bin" / "python"
    marker = VENV / ".installed"
    if not marker.exists():
        venv.create(VENV, with_pip=True, clear=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "azure-batch>=14.2,<15"], check=True, timeout=600)
        marker.touch()
    return python


def test_sdk14_runs_a_task_and_uploads_its_output(shared_stack: LocalStack, sdk14_python: Path) -> None:
    # Given a container to upload to
    container, container_url = writable_container(shared_stack.connection_string)
    # When the 14.x client adds a job and a task and waits for it
    argv = [str(sdk14_python), str(CLIENT), shared_stack.url, shared_stack.account_name, shared_stack.account_key]
    run = subprocess.run([*argv, container_url], capture_output=True, text=True, timeout=180, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    # Then what it saw is what Azure Batch would have shown
    assert (seen["state"], seen["exit_code"], seen["result"]) == ("completed", 0, "success")
    assert seen["stdout"] == "hello from sdk14\n"
    assert seen["collection"] == ["success"] * 3
    assert seen["listed"] == ["c0", "c1", "c2", "tuned", "writer"]
    assert seen["duplicate"] == "JobExists"
    assert (seen["tuned_retries"], seen["completed_update"]) == (4, "TaskCompleted")
    assert (seen["job_state"], seen["job_priority"]) == ("completed", 7)
    assert seen["images"] == ["batchyard.local"] and "local" in seen["counted"]
    assert seen["pool"] == {"patched": ["/bin/true", [["a", "1"]]], "replaced": [True, [["b", "2"]]]}
    assert read_blob(shared_stack.connection_string, container, "sdk14/result.txt") == b"fourteen\n"
