from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from nodeagent import starttask
from nodeagent.identity import current_user
from nodeagent.layout import NodeLayout
from nodeagent.messages import ContainerSpec, PoolConfig, ResourceFileSpec, StartTaskReport, StartTaskSpec
from nodeagent.starttask import StartTaskRun
from nodeagent.testing import FakeBlobStore


def start_run(tmp_path: Path, blob: FakeBlobStore | None = None, **fields: Any) -> StartTaskRun:
    layout = NodeLayout(tmp_path)
    layout.create()
    spec = StartTaskSpec(**{"command_line": "/bin/true", **fields})
    config = PoolConfig(pool_id="pool-1", version="v1", account_name="acct", account_url="http://acct", start_task=spec)
    return StartTaskRun(
        config=config,
        spec=spec,
        node_id="node-1",
        layout=layout,
        run_as=current_user(),
        blob=blob or FakeBlobStore(),
        agent_path="/usr/bin:/bin",
        kill_grace=0.5,
        retry_delay=0.01,
    )


def run(
    start: StartTaskRun, cancel: threading.Event | None = None
) -> tuple[StartTaskReport | None, list[StartTaskReport]]:
    updates: list[StartTaskReport] = []
    return starttask.run(start, cancel or threading.Event(), updates.append), updates


def test_runs_in_startup_wd_with_the_start_task_environment(tmp_path: Path) -> None:
    # Given a start task that prints its directory and environment
    start = start_run(tmp_path, command_line="/bin/sh -c 'pwd; env | sort; echo oops >&2'", environment={"MINE": "1"})
    # When it runs
    report, updates = run(start)
    # Then it ran in startup/wd, wrote startup/stdout.txt, and had no job or task id
    assert report is not None and (report.state, report.result, report.exit_code) == ("completed", "success", 0)
    lines = (tmp_path / "startup" / "stdout.txt").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
    assert lines[0] == str(tmp_path / "startup" / "wd")
    assert env["AZ_BATCH_NODE_STARTUP_DIR"] == str(tmp_path / "startup")
    assert env["AZ_BATCH_TASK_WORKING_DIR"] == str(tmp_path / "startup" / "wd")
    assert env["AZ_BATCH_POOL_ID"] == "pool-1" and env["AZ_BATCH_ACCOUNT_URL"] == "http://acct/"
    assert env["MINE"] == "1" and env["HOME"] == lines[0]
    assert "AZ_BATCH_JOB_ID" not in env and "AZ_BATCH_TASK_ID" not in env
    assert (tmp_path / "startup" / "stderr.txt").read_text() == "oops\n"
    assert updates[0].state == "running" and updates[-1] == report


def test_a_failing_start_task_is_retried_up_to_its_count(tmp_path: Path) -> None:
    start = start_run(tmp_path, command_line="/bin/sh -c 'echo try >> ../tries.txt; exit 3'", max_task_retry_count=2)
    report, updates = run(start)
    assert report is not None and (report.result, report.exit_code, report.retry_count) == ("failure", 3, 2)
    assert report.failure is not None and report.failure.code == "FailureExitCode"
    assert report.last_retry_time is not None
    assert (tmp_path / "startup" / "tries.txt").read_text() == "try\n" * 3
    assert [update.retry_count for update in updates if update.state == "running"] == [0, 1, 2]


def test_a_retry_that_succeeds_ends_the_start_task(tmp_path: Path) -> None:
    script = "test -f ../seen && exit 0; touch ../seen; exit 1"
    report, _ = run(start_run(tmp_path, command_line=f"/bin/sh -c '{script}'", max_task_retry_count=5))
    assert report is not None and (report.result, report.retry_count) == ("success", 1)


def test_resource_files_are_downloaded_into_startup_wd(tmp_path: Path) -> None:
    blob = FakeBlobStore(sources={"http://s/setup.sh": b"echo installed\n"})
    resource = ResourceFileSpec(http_url="http://s/setup.sh", file_path="setup.sh")
    report, _ = run(start_run(tmp_path, blob, command_line="/bin/sh setup.sh", resource_files=[resource]))
    assert report is not None and report.result == "success"
    assert (tmp_path / "startup" / "stdout.txt").read_text() == "installed\n"


def test_a_resource_file_failure_fails_the_try(tmp_path: Path) -> None:
    resource = ResourceFileSpec(http_url="http://s/missing", file_path="x")
    report, _ = run(start_run(tmp_path, resource_files=[resource]))
    assert report is not None and report.result == "failure" and report.exit_code is None
    assert report.failure is not None and report.failure.code == "BlobNotFound"


def test_a_program_that_does_not_exist_fails_the_start_task(tmp_path: Path) -> None:
    report, _ = run(start_run(tmp_path, command_line="/no/such/program"))
    assert report is not None and report.result == "failure"


def test_a_container_start_task_is_refused(tmp_path: Path) -> None:
    report, _ = run(start_run(tmp_path, container=ContainerSpec(image_name="busybox")))
    assert report is not None and report.failure is not None
    assert report.failure.code == starttask.CONTAINER_UNSUPPORTED


def test_cancelling_stops_the_start_task_without_a_report(tmp_path: Path) -> None:
    cancel = threading.Event()
    start = start_run(tmp_path, command_line="/bin/sleep 60")
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    started = time.monotonic()
    report, updates = run(start, cancel)
    assert report is None and time.monotonic() - started < 10
    assert [update.state for update in updates] == ["running"]
